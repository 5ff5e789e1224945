"""The object server's settings: Swift's ``[app:object-server]`` names and defaults."""

from __future__ import annotations

import dataclasses

from swiftlite.common.config import ServerConfig
from swiftlite.common.constraints import DEFAULT_ALLOWED_HEADERS

RESERVED_DATAFILE_META = frozenset({"content-length", "deleted", "etag"})


@dataclasses.dataclass
class ObjectServerConfig(ServerConfig):
    bind_port: int = 6200
    log_name: str = "object-server"
    # Object writes are fsync-bound and a disk serves several fsyncs at once:
    # 4 KiB object writes (temp file, xattr, fsync, rename, fsync dir) on XFS
    # measured ~820/s with 2 threads and ~1,550/s with 8 (perf-limits.md).
    threads_per_disk: int = 8
    # Longest wait for the container updates of one request before answering
    # (Swift's default); the updates go on in the background after that.
    container_update_timeout: float = 1.0
    # Lone tombstones (and .meta without .data) older than this are removed.
    reclaim_age: int = 604800
    # Headers kept with an object besides user metadata and sysmeta.
    allowed_headers: list[str] = dataclasses.field(
        default_factory=lambda: list(DEFAULT_ALLOWED_HEADERS)
    )
    # fdatasync (and drop the page cache of) a PUT every this many MB.
    mb_per_sync: int = 512
    # Seconds a client may pause while sending a body or reading a response.
    client_timeout: float = 60.0
    # The longest a single PUT may take, in seconds.
    max_upload_time: float = 86400.0
    network_chunk_size: int = 65536
    disk_chunk_size: int = 65536
    # Bodies at least this large are sent with os.sendfile from the device's
    # threads; smaller ones are read in one piece and written by the loop.
    sendfile_min_size: int = 1048576
    # Percentage of full-object reads whose md5 is checked against the ETag.
    etag_validate_pct: float = 100.0
    # A separate port for REPLICATE/REPCONN; None serves them on bind_port.
    replication_port: int | None = None
    # Serve replication verbs: None = on both ports, True = only replication
    # verbs on this server, False = no replication verbs.
    replication_server: bool | None = None
    # Incoming REPCONN sessions per device (more are refused with 503).
    replication_concurrency_per_device: int = 3
    # Seconds a REPCONN session may wait for its peer's next message.
    replication_timeout: float = 600.0
    # Temp files (of writes that never finished, e.g. a killed process)
    # older than this are removed; the age keeps in-flight writes safe.
    tmp_max_age: float = 86400.0
    # Seconds between sweeps of the devices' temp dirs (one at start-up).
    tmp_sweep_interval: float = 3600.0
    # Log one line per request (at debug level for replication verbs).
    log_requests: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.container_update_timeout < 0:
            raise ValueError("container_update_timeout must be >= 0")
        if not 0 <= self.etag_validate_pct <= 100:
            raise ValueError("etag_validate_pct must be between 0 and 100")
        # Like Swift, never let a setting shadow what the data file itself owns.
        self.allowed_headers = [
            h.strip().lower()
            for h in self.allowed_headers
            if h.strip() and h.strip().lower() not in RESERVED_DATAFILE_META
        ]
