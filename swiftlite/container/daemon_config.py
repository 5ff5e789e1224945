"""Settings of the container updater and the container-driven object expirer.

Field names and defaults are Swift's ``[container-updater]`` and
``[object-expirer]`` ones where Swift has the setting; swiftlite-only ones are
marked as such.
"""

from __future__ import annotations

import dataclasses

from swiftlite.common.config import DaemonConfig

DEFAULT_RECON_CACHE_PATH = "/var/cache/swiftlite"


@dataclasses.dataclass
class ContainerUpdaterConfig(DaemonConfig):
    log_name: str = "container-updater"
    # Seconds between the starts of two passes.
    interval: float = 300.0
    # Devices swept at the same time (Swift forks this many per pass).
    concurrency: int = 4
    node_timeout: float = 3.0
    conn_timeout: float = 0.5
    # Container DBs looked at per second, per device (0: unlimited).
    containers_per_second: float = 50.0
    # Seconds an account is left alone after a report to it failed.
    account_suppression_time: float = 60.0
    recon_cache_path: str = DEFAULT_RECON_CACHE_PATH
    # Threads doing SQLite work per device.
    threads_per_disk: int = 2

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.containers_per_second < 0:
            raise ValueError("containers_per_second must be >= 0 (0 means unlimited)")
        if self.threads_per_disk < 1:
            raise ValueError("threads_per_disk must be >= 1")


@dataclasses.dataclass
class ObjectExpirerConfig(DaemonConfig):
    log_name: str = "object-expirer"
    interval: float = 300.0
    # Work splitting: this process handles a container when
    # hash(account/container) % processes == process. 0 processes = 1.
    processes: int = 0
    process: int = 0
    # Object deletions in flight at once.
    concurrency: int = 1
    # Object deletions started per second (0: unlimited).
    tasks_per_second: float = 50.0
    node_timeout: float = 10.0
    conn_timeout: float = 0.5
    # swiftlite: expired rows read from a container DB per batch.
    batch_size: int = 1000
    # swiftlite: seconds an object stays after its X-Delete-At before the
    # expirer deletes it (clients never see it after X-Delete-At anyway).
    delay_reaping: float = 0.0
    # A row whose object changed since (409/412) is left for the newer
    # container update to replace; once its expiry is this old it is
    # tombstoned anyway, so it is not retried forever (Swift pops such queue
    # entries after reclaim_age too).
    reclaim_age: float = 604800.0
    # swiftlite: the container server this expirer runs beside. A container
    # is expired only on the node holding its first primary replica (index
    # 0 in the container ring), recognised by ip (one of this host's), port
    # and device, so the replicas of one container do not all send the same
    # deletes.
    bind_ip: str = "0.0.0.0"
    bind_port: int = 6201
    recon_cache_path: str = DEFAULT_RECON_CACHE_PATH
    threads_per_disk: int = 2

    def __post_init__(self) -> None:
        if self.processes < 0:
            raise ValueError("processes must be >= 0")
        if self.process < 0:
            raise ValueError("process must be >= 0")
        if self.processes and self.process >= self.processes:
            raise ValueError("process must be less than processes")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.tasks_per_second < 0:
            raise ValueError("tasks_per_second must be >= 0 (0 means unlimited)")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.reclaim_age < 0:
            raise ValueError("reclaim_age must be >= 0")
        if self.delay_reaping < 0:
            raise ValueError("delay_reaping must be >= 0")
        if self.threads_per_disk < 1:
            raise ValueError("threads_per_disk must be >= 1")
