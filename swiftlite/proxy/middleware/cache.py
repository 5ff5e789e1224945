"""cache: puts the shared cache in ``request["swift.cache"]`` (Swift's memcache
middleware).

With ``memcache_servers`` set it is a :class:`~swiftlite.common.memcache.MemcacheRing`
over those servers; without, an in-process LRU cache with TTLs stands in (the
saio default, so a first run needs no memcached). The in-process cache is per
worker: with ``workers > 1`` tokens and cached info are not shared between
workers, so a warning says to configure memcached.

Settings (Swift's names): ``memcache_servers`` (comma list or YAML list of
``host:port``), ``memcache_max_connections`` (per server, default 2),
``connect_timeout`` (0.3), ``pool_timeout`` (1.0), ``io_timeout`` (2.0),
``tries`` (3), ``memcache_serialization_support`` (only 2, JSON, is accepted:
swiftlite never pickles), and ``local_cache_max_entries`` (100000, the size
of the in-process cache).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from swiftlite.common.config import ConfigError
from swiftlite.common.memcache import CacheClient, LocalCache, MemcacheRing, parse_servers
from swiftlite.proxy.pipeline import Handler, Middleware, PipelineContext

CACHE_KEY = "swift.cache"


def _number(conf: dict[str, Any], name: str, default: float, kind: type = float) -> Any:
    value = conf.pop(name, default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return number


def make_cache(conf: dict[str, Any], logger: Any = None) -> CacheClient:
    """The cache client for these settings; pops what it uses from ``conf``."""
    servers = parse_servers(conf.pop("memcache_servers", None))
    max_conns = _number(conf, "memcache_max_connections", 2, int)
    connect_timeout = _number(conf, "connect_timeout", 0.3)
    pool_timeout = _number(conf, "pool_timeout", 1.0)
    io_timeout = _number(conf, "io_timeout", 2.0)
    tries = _number(conf, "tries", 3, int)
    max_entries = _number(conf, "local_cache_max_entries", 100_000, int)
    serialization = conf.pop("memcache_serialization_support", 2)
    if str(serialization) != "2":
        raise ConfigError(
            "memcache_serialization_support: only 2 (JSON) is supported; "
            f"swiftlite never pickles (got {serialization!r})"
        )
    if not servers:
        return LocalCache(max_entries)
    try:
        return MemcacheRing(
            servers,
            max_conns=max_conns,
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
            io_timeout=io_timeout,
            tries=tries,
            logger=logger,
        )
    except ValueError as exc:
        raise ConfigError(f"memcache_servers: {exc}") from None


def factory(conf: dict[str, Any], ctx: PipelineContext) -> Middleware:
    cache = make_cache(conf, ctx.logger)
    if conf:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(conf))}")
    if isinstance(cache, LocalCache) and ctx.conf.workers > 1:
        ctx.logger.warning(
            "cache: no memcache_servers with %d workers: each worker keeps its own "
            "cache, so auth tokens work only on the worker that issued them",
            ctx.conf.workers,
        )

    async def cache_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[CACHE_KEY] = cache
        return await handler(request)

    return cache_middleware
