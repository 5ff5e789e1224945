"""The container server's settings: Swift's ``[app:container-server]`` names and defaults."""

from __future__ import annotations

import dataclasses

from swiftlite.common.config import ServerConfig


@dataclasses.dataclass
class ContainerServerConfig(ServerConfig):
    bind_port: int = 6201
    log_name: str = "container-server"
    # Log one line per request.
    log_requests: bool = True
    # Hosts an X-Container-Sync-To URL may name (no realms file is read).
    allowed_sync_hosts: list[str] = dataclasses.field(default_factory=lambda: ["127.0.0.1"])
    # Seconds SQLite waits for a busy DB before giving up (Swift's BROKER_TIMEOUT).
    db_timeout: float = 25.0
    # Seconds to wait for a DB directory lock on writes; reads wait less
    # (read_pending_timeout) and answer from the DB as it is when it is busy.
    pending_timeout: float = 10.0
    read_pending_timeout: float = 0.1
    # fdatasync the pending file before acknowledging an object update.
    # Appends from concurrent requests to one container share a single write
    # and fsync, so this costs little under load.
    fsync_pending: bool = True
    # Most object updates merged into one pending-file append.
    max_batch: int = 1000
    # Batches of one container in flight at once (one appends while the
    # previous waits for its fsync).
    max_inflight_batches: int = 2
    # Object updates that may wait per device (queued for the next batch)
    # before more get 503; one running batch holds one disk_limit slot.
    max_queued_updates: int = 2000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if self.max_inflight_batches < 1:
            raise ValueError("max_inflight_batches must be >= 1")
