"""Blocking halves of the container server's verbs (run in the device's threads).

Each function does all of one request's disk and SQLite work in a single hop
to the device's thread pool and returns plain data; the event-loop side
(:mod:`swiftlite.container.server`) turns it into a response and does the
network work (account updates).
"""

from __future__ import annotations

import dataclasses
import email.utils
import os
from collections.abc import Mapping
from typing import Any

from swiftlite.common.devices import DeviceFull, DeviceManager
from swiftlite.common.listing import ListingParams
from swiftlite.common.timestamp import Timestamp
from swiftlite.container.backend import ContainerBroker
from swiftlite.container.records import listing_record
from swiftlite.db.exceptions import DatabaseAlreadyExists

# Container metadata kept besides X-Container-Meta-* and X-Container-Sysmeta-*.
SAVE_HEADERS = frozenset(
    {"x-container-read", "x-container-write", "x-container-sync-key", "x-container-sync-to"}
)


class Conflict(Exception):
    """409, optionally with headers (the existing policy index)."""

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        super().__init__("conflict")
        self.headers = dict(headers or {})


class NotFound(Exception):
    """404 (no DB, or it is deleted)."""


class BadRequest(Exception):
    """400 with Swift's text."""


def is_container_meta(key: str) -> bool:
    lower = key.lower()
    for prefix in ("x-container-meta-", "x-container-sysmeta-"):
        if lower.startswith(prefix) and len(lower) > len(prefix):
            return True
    return False


def metadata_headers(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Stored metadata that goes back out on HEAD/GET (non-empty values only)."""
    return {
        key: value
        for key, (value, _ts) in metadata.items()
        if value != "" and (key.lower() in SAVE_HEADERS or is_container_meta(key))
    }


def http_date(ts: str) -> str:
    """Last-Modified: the PUT timestamp rounded up to the second, as Swift sends it."""
    return email.utils.formatdate(Timestamp(ts).ceil, usegmt=True)


def info_headers(info: Mapping[str, Any], is_deleted: bool) -> dict[str, str]:
    """Swift's gen_resp_headers: backend timestamps always, stats unless deleted."""
    zero = Timestamp(0)

    def internal(key: str) -> str:
        return Timestamp(info.get(key) or zero).internal

    headers = {
        "X-Backend-Timestamp": internal("created_at"),
        "X-Backend-PUT-Timestamp": internal("put_timestamp"),
        "X-Backend-DELETE-Timestamp": internal("delete_timestamp"),
        "X-Backend-Status-Changed-At": internal("status_changed_at"),
        "X-Backend-Storage-Policy-Index": str(info.get("storage_policy_index", 0)),
    }
    if not is_deleted:
        headers.update(
            {
                "X-Container-Object-Count": str(info.get("object_count", 0)),
                "X-Container-Bytes-Used": str(info.get("bytes_used", 0)),
                "X-Timestamp": Timestamp(info.get("created_at") or zero).normal,
                "X-PUT-Timestamp": Timestamp(info.get("put_timestamp") or zero).normal,
                "X-Backend-Sharding-State": str(info.get("db_state", "unsharded")),
            }
        )
    return headers


@dataclasses.dataclass
class Result:
    """What a blocking handler found; the server builds the response."""

    status: int
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: bytes | None = None
    info: dict[str, Any] | None = None


class ContainerOps:
    """Per-worker state the blocking handlers need."""

    def __init__(
        self,
        devices: DeviceManager,
        broker_kwargs: Mapping[str, Any],
        read_pending_timeout: float,
    ) -> None:
        self.devices = devices
        self.broker_kwargs = dict(broker_kwargs)
        self.read_pending_timeout = read_pending_timeout

    def broker(
        self, device: str, part: str, account: str, container: str, read: bool = False
    ) -> ContainerBroker:
        kwargs = dict(self.broker_kwargs)
        if read:
            # A listing should not queue behind a long commit: answer from
            # what is committed (Swift's stale_reads_ok for HEAD/GET).
            kwargs.update(pending_timeout=self.read_pending_timeout, stale_reads_ok=True)
        path = ContainerBroker.db_path(self.devices.devices_root, device, part, account, container)
        return ContainerBroker(path, account=account, container=container, **kwargs)

    def check(self, device: str, space: bool) -> None:
        self.devices.check(device)
        if space and not self.devices.space_ok(device):
            raise DeviceFull(device, "not enough free space")

    # -- object rows ----------------------------------------------------------

    def object_updates(
        self,
        device: str,
        part: str,
        account: str,
        container: str,
        records: list[dict[str, Any]],
        autocreate: bool,
    ) -> None:
        """Append a batch of object rows to the pending file (one write, one fsync)."""
        self.check(device, space=True)
        with self.broker(device, part, account, container) as broker:
            if not os.path.exists(broker.db_file):
                if autocreate:
                    first = records[0]
                    created_ts = Timestamp(Timestamp(first["created_at"]).normal).internal
                    try:
                        broker.initialize(
                            created_ts, storage_policy_index=first["storage_policy_index"]
                        )
                    except DatabaseAlreadyExists:
                        pass
                if not os.path.exists(broker.db_file):
                    raise NotFound()
            broker.put_records(records)

    # -- container verbs ----------------------------------------------------------

    def _update_metadata(
        self, broker: ContainerBroker, headers: Mapping[str, str], timestamp: str
    ) -> None:
        metadata = {
            key.title(): (value, timestamp)
            for key, value in headers.items()
            if key.lower() in SAVE_HEADERS or is_container_meta(key)
        }
        if not metadata:
            return
        if "X-Container-Sync-To" in metadata:
            current = broker.metadata.get("X-Container-Sync-To")
            if current is None or current[0] != metadata["X-Container-Sync-To"][0]:
                broker.set_x_container_sync_points(-1, -1)
        broker.update_metadata(metadata, validate_metadata=True)

    def put_container(
        self,
        device: str,
        part: str,
        account: str,
        container: str,
        headers: Mapping[str, str],
        timestamp: str,
        requested_policy: int | None,
        new_policy: int,
    ) -> Result:
        self.check(device, space=True)
        with self.broker(device, part, account, container) as broker:
            created = False
            if not os.path.exists(broker.db_file):
                try:
                    broker.initialize(timestamp, storage_policy_index=new_policy)
                    created = True
                except DatabaseAlreadyExists:
                    pass
            if not created:
                recreated = broker.is_deleted()
                if recreated:
                    # Only a deleted container may change its policy.
                    broker.set_storage_policy_index(new_policy, timestamp=timestamp)
                elif (
                    requested_policy is not None and requested_policy != broker.storage_policy_index
                ):
                    raise Conflict(
                        {"X-Backend-Storage-Policy-Index": str(broker.storage_policy_index)}
                    )
                broker.update_put_timestamp(timestamp)
                if broker.is_deleted():
                    raise Conflict()
                if recreated:
                    broker.update_status_changed_at(timestamp)
                created = recreated
            self._update_metadata(broker, headers, timestamp)
            info = broker.get_info()
            return Result(
                201 if created else 202,
                {"X-Backend-Storage-Policy-Index": str(broker.storage_policy_index)},
                info=info,
            )

    def delete_container(
        self, device: str, part: str, account: str, container: str, timestamp: str
    ) -> Result:
        self.check(device, space=False)
        with self.broker(device, part, account, container) as broker:
            if not os.path.exists(broker.db_file):
                raise NotFound()
            if not broker.empty():
                raise Conflict()
            existed = bool(Timestamp(broker.get_info()["put_timestamp"])) and not (
                broker.is_deleted()
            )
            broker.delete_db(timestamp)
            if not broker.is_deleted():
                raise Conflict()
            return Result(204 if existed else 404, info=broker.get_info())

    def post_container(
        self,
        device: str,
        part: str,
        account: str,
        container: str,
        headers: Mapping[str, str],
        timestamp: str,
        update_put_timestamp: bool,
    ) -> Result:
        self.check(device, space=True)
        with self.broker(device, part, account, container) as broker:
            if broker.is_deleted():
                raise NotFound()
            if update_put_timestamp:
                broker.update_put_timestamp(timestamp)
            self._update_metadata(broker, headers, timestamp)
        return Result(204)

    def head_container(
        self, device: str, part: str, account: str, container: str, content_type: str
    ) -> Result:
        self.check(device, space=False)
        with self.broker(device, part, account, container, read=True) as broker:
            info, is_deleted = broker.get_info_is_deleted()
            headers = info_headers(info, is_deleted)
            if is_deleted:
                return Result(404, headers)
            headers.update(metadata_headers(broker.metadata))
        headers["Content-Type"] = content_type + "; charset=utf-8"
        headers["Last-Modified"] = http_date(headers["X-PUT-Timestamp"])
        return Result(204, headers)

    def get_container(
        self,
        device: str,
        part: str,
        account: str,
        container: str,
        params: ListingParams,
        requested_policy: int | None,
        allow_reserved: bool,
        shard_format: str | None = None,
    ) -> tuple[Result, list[dict[str, Any]]]:
        """The listing records (not yet formatted: that happens in the server).

        With ``shard_format`` (a request for shard ranges) the answer is
        Swift's for a container that was never sharded: no ranges.
        """
        self.check(device, space=False)
        with self.broker(device, part, account, container, read=True) as broker:
            info, is_deleted = broker.get_info_is_deleted()
            headers = info_headers(info, is_deleted)
            if is_deleted:
                return Result(404, headers), []
            if shard_format is not None:
                headers["X-Backend-Record-Type"] = "shard"
                headers["X-Backend-Record-Shard-Format"] = shard_format
                headers.update(metadata_headers(broker.metadata))
                headers["Last-Modified"] = http_date(headers["X-PUT-Timestamp"])
                return Result(200, headers, info=info), []
            policy = (
                requested_policy
                if requested_policy is not None
                else (int(info["storage_policy_index"]))
            )
            headers["X-Backend-Record-Type"] = "object"
            headers["X-Backend-Record-Storage-Policy-Index"] = str(policy)
            rows = broker.list_objects_iter(
                params.limit,
                params.marker,
                params.end_marker,
                params.prefix,
                params.delimiter,
                params.path,
                storage_policy_index=policy,
                reverse=params.reverse,
                allow_reserved=allow_reserved,
            )
            headers.update(metadata_headers(broker.metadata))
        records = [listing_record(row) for row in rows]
        headers["Last-Modified"] = http_date(headers["X-PUT-Timestamp"])
        return Result(200, headers, info=info), records
