"""Settings shared by ``swiftlite-container-replicator`` and
``swiftlite-account-replicator``: Swift's ``[container-replicator]`` /
``[account-replicator]`` names and defaults (see etc/*-replicator.yaml)."""

from __future__ import annotations

import dataclasses

from swiftlite.common.config import DaemonConfig


@dataclasses.dataclass
class DBReplicatorConfig(DaemonConfig):
    log_name: str = "db-replicator"
    # This node's devices are the ring devices whose replication_ip is one of
    # this host's addresses (or bind_ip when it is specific) and whose
    # replication_port is bind_port: set them as in the server's config.
    bind_ip: str = "0.0.0.0"
    bind_port: int = 6201
    interval: float = 30.0
    # DBs replicated at the same time, over all local devices.
    concurrency: int = 8
    # Rows per merge_items request, and such requests per DB per pass.
    per_diff: int = 1000
    max_diffs: int = 100
    node_timeout: float = 10.0
    conn_timeout: float = 0.5
    # Deleted rows (and deleted DBs) older than this are removed for good.
    reclaim_age: int = 604800
    # Where <type>-replicator.json (last pass statistics) is written.
    recon_cache_path: str = "/var/cache/swiftlite"
    # Threads per device for this daemon's SQLite work.
    threads_per_disk: int = 2

    def __post_init__(self) -> None:
        for name in ("concurrency", "per_diff", "max_diffs", "threads_per_disk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.reclaim_age < 0:
            raise ValueError("reclaim_age must be >= 0")
