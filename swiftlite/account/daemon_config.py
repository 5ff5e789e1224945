"""Settings of the account reaper: Swift's ``[account-reaper]`` names and
defaults; swiftlite-only ones are marked as such."""

from __future__ import annotations

import dataclasses

from swiftlite.common.config import DaemonConfig


@dataclasses.dataclass
class AccountReaperConfig(DaemonConfig):
    log_name: str = "account-reaper"
    # Seconds between the starts of two passes.
    interval: float = 3600.0
    # Deletes in flight: containers and, per container, objects are each
    # worked on sqrt(concurrency) at a time (as in Swift).
    concurrency: int = 25
    node_timeout: float = 10.0
    conn_timeout: float = 0.5
    # Seconds after an account's deletion before its data is removed (a
    # window in which an operator can still undelete it).
    delay_reaping: float = 0.0
    # Warn when an account still holds containers this many seconds after
    # delay_reaping ran out.
    reap_warn_after: float = 2592000.0
    # The account server this reaper runs beside: an account partition is
    # worked on by the devices of this host (bind_ip: one of its addresses,
    # 0.0.0.0 = any) at this port.
    bind_ip: str = "0.0.0.0"
    bind_port: int = 6202
    # swiftlite: where account.recon (per-pass statistics) is written.
    recon_cache_path: str = "/var/cache/swiftlite"
    # swiftlite: threads doing SQLite work per device.
    threads_per_disk: int = 1

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.delay_reaping < 0:
            raise ValueError("delay_reaping must be >= 0")
        if self.reap_warn_after < 0:
            raise ValueError("reap_warn_after must be >= 0")
        if self.threads_per_disk < 1:
            raise ValueError("threads_per_disk must be >= 1")
