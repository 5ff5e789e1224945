"""``swiftlite-account-auditor``: opens every local account DB and
quarantines corrupt ones (the logic is shared: :mod:`swiftlite.db.auditor`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from swiftlite.account.backend import AccountBroker
from swiftlite.common.daemon import run_daemon
from swiftlite.db.auditor import AccountAuditorConfig, DBAuditor


class AccountAuditor(DBAuditor):
    def __init__(self, conf: AccountAuditorConfig, **kwargs: Any) -> None:
        super().__init__(conf, AccountBroker, "accounts", **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """``swiftlite-account-auditor <conf.yaml> [once] [-v]``."""
    return run_daemon(AccountAuditor, AccountAuditorConfig, argv, prog="swiftlite-account-auditor")


if __name__ == "__main__":
    raise SystemExit(main())
