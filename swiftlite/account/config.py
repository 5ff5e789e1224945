"""The account server's settings: Swift's ``[app:account-server]`` names and defaults."""

from __future__ import annotations

import dataclasses

from swiftlite.common.config import ServerConfig


@dataclasses.dataclass
class AccountServerConfig(ServerConfig):
    bind_port: int = 6202
    log_name: str = "account-server"
    # Log one line per request (Swift's log_requests).
    log_requests: bool = True
    # Seconds a container update (PUT of a container row) waits for the DB
    # directory lock before giving up with 503; Swift uses 3 s when the request
    # carries a transaction id.
    pending_timeout: float = 3.0
    # Seconds a read waits for the lock to merge pending rows before it answers
    # from the DB as it is (Swift's stale_reads_ok with pending_timeout 0.1).
    read_pending_timeout: float = 0.1
    # Whether a pending append is fsynced before the 201 is sent. Off by
    # default, as in Swift: a lost update is re-sent by the container updater.
    fsync_pending: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pending_timeout <= 0:
            raise ValueError(f"pending_timeout must be > 0, got {self.pending_timeout}")
        if self.read_pending_timeout < 0:
            raise ValueError(f"read_pending_timeout must be >= 0, got {self.read_pending_timeout}")
