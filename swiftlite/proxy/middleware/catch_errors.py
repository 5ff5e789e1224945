"""catch_errors: the transaction id, and a clean 500 instead of a traceback.

Outermost in the pipeline. It names the request (``swift.trans_id``; the
client sees it as ``X-Trans-Id`` and ``X-Openstack-Request-Id`` on every
answer, streamed ones included) and puts it in the logging context so every
log line the request causes carries it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from swiftlite.common.http import swift_response
from swiftlite.common.logs import generate_trans_id, set_txn_id, txn_id
from swiftlite.proxy.pipeline import SHARED, Handler, Middleware, PipelineContext

PREPARED = "prepared"


def factory(conf: dict[str, Any], ctx: PipelineContext) -> Middleware:
    suffix = str(conf.pop("trans_id_suffix", "") or "")
    if conf:
        from swiftlite.common.config import ConfigError

        raise ConfigError(f"unknown setting(s) {', '.join(sorted(conf))}")
    logger = ctx.logger

    def add_ids(request: web.Request, response: web.StreamResponse) -> None:
        request.get(SHARED, {})[PREPARED] = True
        tid = request.get("swift.trans_id")
        if tid:
            response.headers["X-Trans-Id"] = tid
            response.headers["X-Openstack-Request-Id"] = tid

    ctx.add_response_hook(add_ids)

    async def catch_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        extra = request.headers.get("X-Trans-Id-Extra")
        tid = generate_trans_id(suffix + (f"-{extra[:32]}" if extra else ""))
        request["swift.trans_id"] = tid
        token = set_txn_id(tid)
        try:
            return await handler(request)
        except asyncio.CancelledError:
            raise
        except web.HTTPException as exc:
            return exc
        except ConnectionResetError:
            # The client went away; nobody will read this answer.
            return swift_response(499)
        except Exception:
            logger.exception("Error: An error occurred")
            if request.get(SHARED, {}).get(PREPARED):
                # Headers are gone already: all we can do is cut the body.
                raise
            return swift_response(500, b"An error occurred", content_type="text/plain")
        finally:
            txn_id.reset(token)

    return catch_errors
