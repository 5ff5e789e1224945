"""Quorum and Swift's choice of the one answer a client gets from many nodes."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field


def quorum_size(n: int) -> int:
    """A majority for a replicated policy: 2 of 3, 2 of 4, 1 of 2."""
    return (n + 1) // 2


def num_container_updates(
    container_replicas: int, container_quorum: int, object_replicas: int, object_quorum: int
) -> int:
    """How many container updates the object PUTs must carry (Swift's formula):
    enough that a container quorum hears about any object write quorum."""
    return max(container_quorum + object_replicas - object_quorum, container_replicas)


@dataclass
class NodeResponse:
    """One backend answer, reduced to what best_response needs."""

    status: int
    reason: str = ""
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


def _quorum_index(
    statuses: Sequence[int], quorum: int, avoid: Collection[int] = ()
) -> int | None:
    for hundred in (200, 300, 400):
        in_class = [(i, s) for i, s in enumerate(statuses) if hundred <= s < hundred + 100]
        if len(in_class) < quorum:
            continue
        candidates = [(i, s) for i, s in in_class if i not in avoid]
        if not candidates:
            continue
        # max() keeps the first of equal statuses, as Swift's does.
        return max(candidates, key=lambda pair: pair[1])[0]
    return None


def best_response(
    responses: Sequence[NodeResponse],
    quorum: int | None = None,
    overrides: Mapping[int, int] | None = None,
) -> NodeResponse:
    """Swift's ``best_response``: the highest status of the first class (2xx,
    3xx, 4xx) that a quorum agrees on; failing that, the same after mapping
    statuses through ``overrides`` (the mapped entries are never the one
    returned); failing that, 503."""
    if quorum is None:
        quorum = quorum_size(len(responses))
    statuses = [r.status for r in responses]
    if statuses:
        index = _quorum_index(statuses, quorum)
        if index is not None:
            return responses[index]
        if overrides:
            avoid = {i for i, s in enumerate(statuses) if s in overrides}
            mapped = [overrides.get(s, s) for s in statuses]
            index = _quorum_index(mapped, quorum, avoid)
            if index is not None:
                return responses[index]
    return NodeResponse(503)
