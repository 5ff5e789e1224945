"""``proxy-server.yaml``: the proxy's settings, with Swift's names and defaults.

Besides Swift's ``[app:proxy-server]`` settings it holds the pipeline (Swift's
``[pipeline:main]``, outermost first, ``proxy_server`` last) and ``filters``,
one mapping of settings per middleware name (Swift's ``[filter:*]`` sections).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from swiftlite.common.config import ServerConfig

DEFAULT_PIPELINE = ["catch_errors", "gatekeeper", "healthcheck", "proxy_server"]
SORTING_METHODS = ("shuffle", "timing", "affinity")
_NODE_COUNT_RE = re.compile(r"^\s*(\d+)\s*(\*\s*replicas)?\s*$")


def parse_request_node_count(value: str | int) -> tuple[int, bool]:
    """``'2 * replicas'`` → (2, True); ``'5'`` → (5, False); else ValueError."""
    match = _NODE_COUNT_RE.match(str(value))
    if not match:
        raise ValueError(f"invalid request_node_count {value!r}")
    return int(match.group(1)), bool(match.group(2))


@dataclasses.dataclass
class ProxyServerConfig(ServerConfig):
    bind_port: int = 8080
    log_name: str = "proxy-server"
    node_timeout: float = 10.0
    conn_timeout: float = 0.5
    # None means "same as node_timeout", as in Swift.
    recoverable_node_timeout: float | None = None
    post_quorum_timeout: float = 0.5
    client_timeout: float = 60.0
    error_suppression_limit: int = 10
    error_suppression_interval: float = 60.0
    request_node_count: str = "2 * replicas"
    sorting_method: str = "shuffle"
    # With sorting_method timing: how long a node's measured read time counts.
    timing_expiry: float = 300.0
    account_autocreate: bool = False
    allow_account_management: bool = False
    expose_info: bool = True
    # Seconds account/container info stays in the shared cache (the cache
    # middleware's request["swift.cache"]); 0 disables. Misses: a tenth.
    recheck_account_existence: float = 60.0
    recheck_container_existence: float = 60.0
    # Headers only an account owner (request["swift_owner"], set by auth)
    # may see or set on accounts and containers.
    swift_owner_headers: list[str] = dataclasses.field(
        default_factory=lambda: [
            "x-container-read",
            "x-container-write",
            "x-container-sync-key",
            "x-container-sync-to",
            "x-account-meta-temp-url-key",
            "x-account-meta-temp-url-key-2",
            "x-container-meta-temp-url-key",
            "x-container-meta-temp-url-key-2",
            "x-account-access-control",
        ]
    )
    object_chunk_size: int = 65536
    client_chunk_size: int = 65536
    # Total connections the backend pool keeps open (0: no limit).
    backend_pool_size: int = 0
    pipeline: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_PIPELINE))
    filters: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sorting_method not in SORTING_METHODS:
            raise ValueError(
                f"sorting_method must be one of {', '.join(SORTING_METHODS)}, "
                f"got {self.sorting_method!r}"
            )
        parse_request_node_count(self.request_node_count)
        if not self.pipeline or self.pipeline[-1] != "proxy_server":
            raise ValueError("pipeline must end with proxy_server")
        if "proxy_server" in self.pipeline[:-1]:
            raise ValueError("proxy_server may appear only once, last, in the pipeline")
        for name in (
            "node_timeout",
            "conn_timeout",
            "post_quorum_timeout",
            "client_timeout",
            "error_suppression_interval",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.object_chunk_size < 1 or self.client_chunk_size < 1:
            raise ValueError("chunk sizes must be >= 1")

    @property
    def recoverable_timeout(self) -> float:
        if self.recoverable_node_timeout is None:
            return self.node_timeout
        return self.recoverable_node_timeout

    def node_count(self, replicas: int) -> int:
        """How many nodes (primaries + handoffs) a request may try."""
        count, per_replica = parse_request_node_count(self.request_node_count)
        return count * replicas if per_replica else count
