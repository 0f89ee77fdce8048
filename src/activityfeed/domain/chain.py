"""Tamper evidence: each workspace's events form a hash chain of per-batch checkpoints.

The rules, with no I/O (see docs/decisions/0003-tamper-evidence.md):

* **Leaf.** Every event has a leaf hash, ``sha256(canonical(event, version))``, where
  the canonical form is a compact ASCII JSON array of the version and the stored fields
  in ``FIELDS`` order (version 1: all of them; version 2, ``VERSION``, written since:
  all but ``seq``, the counter every workspace shares), times as ISO 8601 in UTC to the
  microsecond (``2026-11-26T09:15:02.123456+00:00``), and metadata with sorted
  keys and numbers normalised so that a JSON round trip through either database (JSONB
  stores ``1e20`` as the integer ``100000000000000000000`` and ``-0.0`` as ``0``) gives
  the same bytes. A checkpoint states the version its leaves were computed in.
* **Checkpoint.** Each recording transaction writes one checkpoint covering the
  ``ws_ord`` range it appended: ``digest = sha256(previous digest ‖ first ‖ last ‖ leaves)``.
  The first checkpoint of a workspace chains from ``genesis(workspace_id)``.
* **Head.** The newest checkpoint's ``(last_ord, digest)`` stands for the whole history:
  keep it somewhere else and any later rewrite, truncation included, shows.

``ChainCheck`` verifies a workspace from two ordered streams (checkpoints by
``last_ord``, leaves by ``ws_ord``) in constant memory, and names the first break.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from operator import itemgetter
from typing import Any

#: The canonical serialisation's version that new checkpoints are written in (each
#: checkpoint stores its own).
VERSION = 2
#: Every version ``check`` can verify: history is immutable, so old ones stay.
VERSIONS = frozenset({1, 2})

#: Every stored column of ``events``, in the order the canonical form lists them
#: (version 2 leaves out the first, ``seq``).
FIELDS = (
    "seq",
    "id",
    "workspace_id",
    "ws_ord",
    "resource_type",
    "action",
    "resource_id",
    "resource_name",
    "description",
    "actor_id",
    "actor_name",
    "actor_email",
    "source_kind",
    "source_key_prefix",
    "created_at",
    "recorded_at",
    "metadata",
    "private_to",
    "idempotency_key",
    "payload_hash",
)
_CREATED, _RECORDED, _METADATA = (
    FIELDS.index(n) for n in ("created_at", "recorded_at", "metadata")
)
_RANGE = struct.Struct(">QQ")
# One encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_first = itemgetter(0)
_sha256 = hashlib.sha256


@lru_cache(maxsize=1024)
def _time(value: datetime) -> str:
    # Cached: a batch's events share their recording time (and often their creation time).
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("chain times must be timezone-aware")
    if offset:
        value = value.astimezone(UTC)
    # "+00:00" whatever the tzinfo object: every stored time is UTC.
    return value.isoformat(timespec="microseconds")


def _key(key: Any) -> str:
    # JSON object keys are strings; json.dumps turns other keys into these same strings.
    return key if type(key) is str else json.dumps(key)


def _norm(value: Any) -> Any:
    """Metadata as a JSON round trip through either database gives it back, with its
    keys in sorted order (JSONB reorders them)."""
    kind = type(value)
    if kind is dict:
        items = sorted(((_key(k), v) for k, v in value.items()), key=_first)
        return {k: _norm(v) for k, v in items}
    if kind is list or kind is tuple:
        return [_norm(v) for v in value]
    if kind is float and value.is_integer():
        # JSONB keeps the decimal text and gives integral values back as ints (1e20,
        # 1.5e300, -0.0 → 0): use the exact value of the shortest repr on both sides.
        return int(Decimal(repr(value)))
    return value


def canonical(values: Sequence[Any], version: int = VERSION) -> bytes:
    """The canonical bytes, in ``version``, of one event given as values in ``FIELDS``
    order (version 2 ignores the ``seq`` value, which may then be None).

    Raises ``ValueError`` for a naive datetime, a row of the wrong width or a version
    not in ``VERSIONS``.
    """
    if len(values) != len(FIELDS):
        raise ValueError(f"an event has {len(FIELDS)} fields, got {len(values)}")
    if version == 2:
        # seq is FIELDS[0]: the version takes its place, so the row is the values with
        # their first one replaced (tests/unit/test_chain.py holds it to version 1).
        row = list(values)
        row[0] = 2
        shift = 0
    elif version == 1:
        row = [1, *values]
        shift = 1
    else:
        raise ValueError(f"no canonical form of version {version}")
    row[_CREATED + shift] = _time(row[_CREATED + shift])
    row[_RECORDED + shift] = _time(row[_RECORDED + shift])
    metadata = row[_METADATA + shift]
    row[_METADATA + shift] = _norm(metadata) if metadata else {}
    return _ENCODER.encode(row).encode("ascii")


def leaf(values: Sequence[Any], version: int = VERSION) -> bytes:
    """The 32-byte leaf hash of one event (values in ``FIELDS`` order) in ``version``."""
    return _sha256(canonical(values, version)).digest()


def genesis(workspace_id: str) -> bytes:
    """The digest the first checkpoint chains from: binds a chain to its workspace."""
    return _sha256(b"activityfeed/events/v1\x00" + workspace_id.encode()).digest()


def fold(previous: bytes, first_ord: int, last_ord: int, leaves: Iterable[bytes]) -> bytes:
    """The digest of the checkpoint covering ``first_ord..last_ord`` after ``previous``."""
    h = _sha256(previous)
    h.update(_RANGE.pack(first_ord, last_ord))
    for one in leaves:
        h.update(one)
    return h.digest()


def values_of(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A row given by column name, as values in ``FIELDS`` order."""
    return tuple(row[name] for name in FIELDS)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    first_ord: int
    last_ord: int
    digest: str
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class Leaf:
    """One event's place and what its leaf hash comes from, as the verifier needs them:
    its ``values`` (in ``FIELDS`` order), hashed in the version of the checkpoint that
    covers it, or else its ``hash`` as given (an export's hidden event, hashed by the
    exporter in that version)."""

    ws_ord: int
    seq: int | None
    hash: bytes = b""
    values: Sequence[Any] | None = None

    def hash_in(self, version: int) -> bytes:
        """The leaf hash in ``version`` (one of ``VERSIONS``)."""
        return self.hash if self.values is None else leaf(self.values, version)


class BreakKind(StrEnum):
    """What a break looks like; the names are printed by ``activityfeed verify``."""

    #: A checkpoint's events do not hash to its digest: an edit, a swap of contents, or
    #: a replaced event (or an edited or replaced checkpoint).
    CONTENT_MISMATCH = "content_mismatch"
    #: A position a checkpoint covers holds no event: a deletion, or a truncation of the
    #: head or tail of the events.
    MISSING_EVENT = "missing_event"
    #: An event whose position is below the one expected (a duplicate or an insertion
    #: that reuses a position).
    UNEXPECTED_EVENT = "unexpected_event"
    #: Events beyond the newest checkpoint: inserted, or recorded by a path that skipped
    #: the chain (such as the benchmark's floor, ``store.bulk.driver_insert``).
    UNCHAINED_EVENT = "unchained_event"
    #: ``seq`` does not grow with ``ws_ord``: events were reordered.
    OUT_OF_ORDER = "out_of_order"
    #: Positions no checkpoint covers, or a history that does not start at 1.
    MISSING_CHECKPOINT = "missing_checkpoint"
    #: A checkpoint that starts inside the previous one, or is malformed.
    BAD_CHECKPOINT = "bad_checkpoint"
    #: A checkpoint of a canonical version this code does not know.
    UNKNOWN_VERSION = "unknown_version"
    #: The chain disagrees with a head kept elsewhere (a rewrite or a truncation of both
    #: events and checkpoints).
    ANCHOR_MISMATCH = "anchor_mismatch"


@dataclass(frozen=True, slots=True)
class Break:
    ws_ord: int
    kind: BreakKind
    detail: str


@dataclass(frozen=True, slots=True)
class Head:
    ws_ord: int
    digest: str

    def __str__(self) -> str:
        return f"{self.ws_ord}:{self.digest}"

    @classmethod
    def parse(cls, text: str) -> Head:
        """``"<ws_ord>:<64 hex digits>"``, as ``activityfeed verify`` prints it."""
        ord_, sep, digest = text.strip().partition(":")
        if not sep or not ord_.isdigit() or len(digest) != 64:
            raise ValueError("a head is written <ws_ord>:<64 hex digits>")
        int(digest, 16)
        return cls(ws_ord=int(ord_), digest=digest.lower())


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome for one workspace: how far it verified, its head, the first break."""

    workspace_id: str
    events: int
    head: Head
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def _unchained(first: Leaf, rest: Iterator[Leaf], expected: int) -> str:
    """What lies past the newest checkpoint: how many events, which positions (a path
    that skips the chain, such as the benchmark's floor, leaves a whole range)."""
    count, last = 1, first.ws_ord
    for one in rest:
        count, last = count + 1, max(last, one.ws_ord)
    if count == 1:
        events = f"1 event at position {last}"
    else:
        events = f"{count} events at positions {first.ws_ord}..{last}"
    if expected == 1:
        return f"{events}, and the workspace has no checkpoint"
    return f"{events}, after the newest checkpoint (it ends at {expected - 1})"


def check(
    workspace_id: str,
    checkpoints: Iterable[Checkpoint],
    leaves: Iterable[Leaf],
    *,
    anchors: Iterable[Head] = (),
) -> Report:
    """Verify one workspace: ``checkpoints`` by ``last_ord`` and ``leaves`` by ``ws_ord``
    (then ``seq``), as stored. Stops at the first break.

    Each leaf is hashed in the version of the checkpoint that covers it, so histories
    whose older checkpoints are version 1 and newer ones version 2 verify.
    ``anchors`` are heads kept elsewhere; the chain must pass through each exactly.
    ``Leaf.seq`` may be None (an export's hidden events, and its events under version-2
    checkpoints); then order is not checked there.
    """
    previous = genesis(workspace_id)
    expected = 1
    count = 0
    last_seq: int | None = None
    stream: Iterator[Leaf] = iter(leaves)
    current = next(stream, None)
    pending = sorted(anchors, key=lambda a: a.ws_ord)

    def report(broken: Break | None) -> Report:
        return Report(workspace_id, count, Head(expected - 1, previous.hex()), broken)

    def anchored(position: int, digest: bytes) -> Break | None:
        while pending and position >= pending[0].ws_ord:
            anchor = pending.pop(0)
            if position != anchor.ws_ord or digest.hex() != anchor.digest:
                return Break(
                    anchor.ws_ord, BreakKind.ANCHOR_MISMATCH, f"the chain is not at {anchor}"
                )
        return None

    if broken := anchored(0, previous):
        return report(broken)
    for cp in checkpoints:
        if cp.version not in VERSIONS:
            return report(Break(cp.first_ord, BreakKind.UNKNOWN_VERSION, f"version {cp.version}"))
        if cp.first_ord > expected:
            what = "history does not start at 1" if expected == 1 else "no checkpoint covers"
            return report(
                Break(
                    expected,
                    BreakKind.MISSING_CHECKPOINT,
                    f"{what}: positions {expected}..{cp.first_ord - 1}",
                )
            )
        if cp.first_ord < expected or cp.last_ord < cp.first_ord:
            return report(
                Break(
                    cp.first_ord,
                    BreakKind.BAD_CHECKPOINT,
                    f"checkpoint {cp.first_ord}..{cp.last_ord} after position {expected - 1}",
                )
            )
        version = cp.version
        hashes: list[bytes] = []
        for position in range(cp.first_ord, cp.last_ord + 1):
            if current is None or current.ws_ord > position:
                return report(
                    Break(position, BreakKind.MISSING_EVENT, "no event holds this position")
                )
            if current.ws_ord < position:
                return report(
                    Break(
                        current.ws_ord,
                        BreakKind.UNEXPECTED_EVENT,
                        f"an event at position {current.ws_ord} where {position} was expected",
                    )
                )
            if current.seq is not None:
                if last_seq is not None and current.seq <= last_seq:
                    return report(
                        Break(
                            position,
                            BreakKind.OUT_OF_ORDER,
                            f"seq {current.seq} is not after the previous event's {last_seq}",
                        )
                    )
                last_seq = current.seq
            hashes.append(current.hash_in(version))
            current = next(stream, None)
        digest = fold(previous, cp.first_ord, cp.last_ord, hashes)
        if digest.hex() != cp.digest.lower():
            return report(
                Break(
                    cp.first_ord,
                    BreakKind.CONTENT_MISMATCH,
                    f"the events at positions {cp.first_ord}..{cp.last_ord} do not match "
                    "their checkpoint",
                )
            )
        previous, expected = digest, cp.last_ord + 1
        count += len(hashes)
        if broken := anchored(cp.last_ord, digest):
            return report(broken)
    if current is not None:
        if current.ws_ord < expected:
            return report(
                Break(
                    current.ws_ord,
                    BreakKind.UNEXPECTED_EVENT,
                    "an event after the newest checkpoint",
                )
            )
        return report(
            Break(current.ws_ord, BreakKind.UNCHAINED_EVENT, _unchained(current, stream, expected))
        )
    if pending:
        return report(
            Break(
                pending[0].ws_ord,
                BreakKind.ANCHOR_MISMATCH,
                f"the chain ends at position {expected - 1}, before {pending[0]}",
            )
        )
    return report(None)
