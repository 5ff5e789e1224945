"""Settings of the object auditor and object updater.

Field names and defaults are Swift's ``[object-auditor]`` and
``[object-updater]`` ones, so an operator's object-server.conf values carry
over; a few swiftlite-only settings are marked as such.
"""

from __future__ import annotations

import dataclasses

from swiftlite.common.config import DaemonConfig

DEFAULT_RECON_CACHE_PATH = "/var/cache/swiftlite"
AUDITOR_MODES = ("both", "all", "zbf")


@dataclasses.dataclass
class ObjectAuditorConfig(DaemonConfig):
    log_name: str = "object-auditor"
    # Seconds between the starts of two passes (a pass that takes longer is
    # followed at once by the next).
    interval: float = 30.0
    # Full (ALL) pass: objects opened and bytes read per second, per device.
    files_per_second: float = 20.0
    bytes_per_second: float = 10000000.0
    # Fast (ZBF) pass: objects per second; reads metadata only.
    zero_byte_files_per_second: float = 50.0
    # Devices audited at the same time.
    concurrency: int = 1
    # Seconds between progress lines (and recon updates) within a pass.
    log_time: float = 3600.0
    recon_cache_path: str = DEFAULT_RECON_CACHE_PATH
    # swiftlite: which passes run. "both" runs the ZBF and the ALL pass side by
    # side in forever mode (as Swift forks a ZBF child) and the ALL pass, which
    # includes every ZBF check, in once mode.
    mode: str = "both"
    # Tombstones older than this make the auditor invalidate their suffix so
    # the next rehash (replicator) removes them; keep it equal to the object
    # server's.
    reclaim_age: int = 604800
    # swiftlite: remove objects whose X-Delete-At has passed (DESIGN section 6).
    remove_expired: bool = True
    # Bytes read per step of the full pass.
    disk_chunk_size: int = 1048576

    def __post_init__(self) -> None:
        if self.mode not in AUDITOR_MODES:
            raise ValueError(f"mode must be one of {', '.join(AUDITOR_MODES)}")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.disk_chunk_size < 1:
            raise ValueError("disk_chunk_size must be >= 1")
        for name in ("files_per_second", "bytes_per_second", "zero_byte_files_per_second"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 means unlimited)")


@dataclasses.dataclass
class ObjectUpdaterConfig(DaemonConfig):
    log_name: str = "object-updater"
    interval: float = 300.0
    # Container updates in flight per device.
    concurrency: int = 8
    # Devices swept at the same time (Swift forks this many workers).
    updater_workers: int = 1
    # Async pending records processed per second per device; unset means 50,
    # or 1 / (slowdown + 0.01) when the deprecated ``slowdown`` is given.
    objects_per_second: float | None = None
    slowdown: float | None = None
    node_timeout: float = 10.0
    conn_timeout: float = 0.5
    # Seconds between progress lines within a device sweep.
    report_interval: float = 300.0
    recon_cache_path: str = DEFAULT_RECON_CACHE_PATH

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.updater_workers < 1:
            raise ValueError("updater_workers must be >= 1")
        if self.objects_per_second is not None and self.objects_per_second < 0:
            raise ValueError("objects_per_second must be >= 0 (0 means unlimited)")
        if self.slowdown is not None and self.slowdown < 0:
            raise ValueError("slowdown must be >= 0")

    @property
    def max_objects_per_second(self) -> float:
        if self.objects_per_second is not None:
            return self.objects_per_second
        if self.slowdown is not None:
            return 1.0 / (self.slowdown + 0.01)
        return 50.0
