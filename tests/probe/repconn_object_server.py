"""The object server with the REPCONN route added, for probe tests.

Used only while ``swiftlite/object/server.py`` does not register REPCONN
itself (tests/probe/test_object_replication.py checks and prefers the real
server). Run as ``python tests/probe/repconn_object_server.py <conf.yaml>``
with ``AIOHTTP_NO_EXTENSIONS=1`` (aiohttp's C parser refuses unknown methods).
"""

from __future__ import annotations

import sys
from typing import Any

from aiohttp import web

from swiftlite.common.config import load_cluster_config
from swiftlite.common.daemon import load_or_exit, parse_args, run_server
from swiftlite.object import repconn
from swiftlite.object.config import ObjectServerConfig
from swiftlite.object.server import ObjectServer


class RepconnObjectServer(ObjectServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.conf.replication_server is not False:
            self.methods.setdefault(
                "REPCONN", lambda req, path: repconn.handle_repconn(self, req, path)
            )


def make_app(conf: ObjectServerConfig) -> web.Application:
    return RepconnObjectServer(conf).make_app()


def main() -> int:
    conf_path, _once, _verbose = parse_args(sys.argv[1:], "repconn-object-server")
    conf = load_or_exit(conf_path, ObjectServerConfig)
    load_cluster_config(conf.swift_dir)
    return run_server(conf, make_app)


if __name__ == "__main__":
    raise SystemExit(main())
