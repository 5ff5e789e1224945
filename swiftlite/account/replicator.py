"""``swiftlite-account-replicator <conf.yaml> [once] [-v]``: DB replication
of account DBs (the shared machinery is :mod:`swiftlite.db.replicator`)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from swiftlite.account.backend import DATADIR, AccountBroker
from swiftlite.common.daemon import run_daemon
from swiftlite.db.replicator import DBReplicator
from swiftlite.db.replicator_config import DBReplicatorConfig


@dataclasses.dataclass
class AccountReplicatorConfig(DBReplicatorConfig):
    log_name: str = "account-replicator"
    bind_port: int = 6202


class AccountReplicator(DBReplicator):
    broker_class = AccountBroker
    datadir = DATADIR
    server_type = "account"


def main(argv: Sequence[str] | None = None) -> int:
    return run_daemon(
        AccountReplicator,
        AccountReplicatorConfig,
        argv if argv is not None else sys.argv[1:],
        "swiftlite-account-replicator",
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
