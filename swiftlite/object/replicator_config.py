"""Settings of ``swiftlite-object-replicator``: Swift's ``[object-replicator]``
names and defaults where Swift has them (see etc/object-replicator.yaml)."""

from __future__ import annotations

import dataclasses

from swiftlite.common.config import DaemonConfig


@dataclasses.dataclass
class ObjectReplicatorConfig(DaemonConfig):
    log_name: str = "object-replicator"
    # Which ring devices are this node's: those whose replication_ip is one
    # of this host's addresses (or bind_ip when it is not a wildcard) and
    # whose replication_port is bind_port (the object server's port).
    bind_ip: str = "0.0.0.0"
    bind_port: int = 6200
    # Seconds between the starts of two passes (forever mode).
    interval: float = 30.0
    # Partitions replicated at the same time, over all local devices.
    concurrency: int = 1
    # Seconds to connect to a peer, to wait for its REPCONN answer (and its
    # suffix hashes, which may need a rehash), and for each later message.
    conn_timeout: float = 0.5
    http_timeout: float = 60.0
    node_timeout: float = 10.0
    # Tombstones (and .meta files without data) older than this are removed
    # when their suffix is rehashed. Keep it longer than any node is down.
    reclaim_age: int = 604800
    # Drain handoff partitions before syncing primary ones.
    handoffs_first: bool = False
    # Cap on the bytes of file data sent per second by this daemon; 0 = none.
    max_bytes_per_second: int = 0
    # Threads per device for this daemon's file work (hashing, reading).
    threads_per_disk: int = 2
    # Where the progress/statistics file object-replicator.json is written.
    recon_cache_path: str = "/var/cache/swiftlite"
    # Rewrite that file at least this often during a pass (seconds).
    stats_interval: float = 30.0
    # Replicate only these devices / partitions (empty = all); for operators.
    devices_only: list[str] = dataclasses.field(default_factory=list)
    partitions_only: list[int] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.max_bytes_per_second < 0:
            raise ValueError("max_bytes_per_second must be >= 0")
        if self.threads_per_disk < 1:
            raise ValueError("threads_per_disk must be >= 1")
        if self.reclaim_age < 0:
            raise ValueError("reclaim_age must be >= 0")
