"""``swiftlite-container-replicator <conf.yaml> [once] [-v]``: DB replication
of container DBs (the shared machinery is :mod:`swiftlite.db.replicator`)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from swiftlite.common.daemon import run_daemon
from swiftlite.container.backend import DATADIR, ContainerBroker
from swiftlite.db.replicator import DBReplicator
from swiftlite.db.replicator_config import DBReplicatorConfig


@dataclasses.dataclass
class ContainerReplicatorConfig(DBReplicatorConfig):
    log_name: str = "container-replicator"
    bind_port: int = 6201


class ContainerReplicator(DBReplicator):
    broker_class = ContainerBroker
    datadir = DATADIR
    server_type = "container"


def main(argv: Sequence[str] | None = None) -> int:
    return run_daemon(
        ContainerReplicator,
        ContainerReplicatorConfig,
        argv if argv is not None else sys.argv[1:],
        "swiftlite-container-replicator",
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
