"""``swiftlite-container-auditor``: opens every local container DB and
quarantines corrupt ones (the logic is shared: :mod:`swiftlite.db.auditor`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from swiftlite.common.daemon import run_daemon
from swiftlite.container.backend import ContainerBroker
from swiftlite.db.auditor import ContainerAuditorConfig, DBAuditor


class ContainerAuditor(DBAuditor):
    def __init__(self, conf: ContainerAuditorConfig, **kwargs: Any) -> None:
        super().__init__(conf, ContainerBroker, "containers", **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """``swiftlite-container-auditor <conf.yaml> [once] [-v]``."""
    return run_daemon(
        ContainerAuditor, ContainerAuditorConfig, argv, prog="swiftlite-container-auditor"
    )


if __name__ == "__main__":
    raise SystemExit(main())
