"""``python -m swiftlite.cli.saio_launch <module> <conf>``: run a daemon's ``main``.

saio starts daemons through this rather than ``python -m <module>`` so that a
daemon module works whether or not it has an ``if __name__ == "__main__"``
block, and the exit status is its ``main``'s return value.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence


def launch(argv: Sequence[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m swiftlite.cli.saio_launch <module> <conf> [args]",
              file=sys.stderr)
        return 2
    module_name, args = argv[0], list(argv[1:])
    main = getattr(importlib.import_module(module_name), "main", None)
    if not callable(main):
        print(f"{module_name} has no main()", file=sys.stderr)
        return 2
    # argv[0] as the daemon sees it: its module, for messages and re-execs.
    sys.argv = [module_name, *args]
    result = main(args)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(launch(sys.argv[1:]))
