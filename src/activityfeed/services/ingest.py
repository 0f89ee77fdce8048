"""Ingestion: events reported by platform services through an API key."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from activityfeed.domain.accounts import ApiKey
from activityfeed.domain.events import (
    INGESTIBLE_TYPES,
    Action,
    Event,
    EventDraft,
    ResourceType,
    Source,
    SourceKind,
)
from activityfeed.errors import InvalidRequest
from activityfeed.services.accounts import is_storable
from activityfeed.services.events import record_events
from activityfeed.store import accounts as account_store
from activityfeed.store import events as store
from activityfeed.store.db import Tx

MAX_BATCH = 1000
MAX_PAST = timedelta(days=365)
MAX_FUTURE = timedelta(minutes=5)
MAX_METADATA_DEPTH = 8
#: Metadata keys that name a secret; their values are replaced, so that a secret never
#: lands in the feed. Keys are split into words first ("access_token", "apiKey",
#: "client-secret"), so that "passed_tests" or "max_tokens" stay ordinary data.
SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "token",
        "apikey",
        "authorization",
        "credential",
        "credentials",
        "cookie",
        "privatekey",
    }
)
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
#: A value that carries one of our own API keys (or any bearer token) is redacted too.
SECRET_VALUE = re.compile(r"afk_[A-Za-z0-9_-]{8,}|\bBearer\s+\S+", re.I)
REDACTED = "[redacted]"


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    words = [w.lower() for w in _WORD.findall(key)]
    pairs = {a + b for a, b in itertools.pairwise(words)}
    return any(w in SECRET_WORDS for w in words) or any(p in SECRET_WORDS for p in pairs)


@dataclass(frozen=True, slots=True)
class IngestItem:
    """One item of ``POST /api/events``, its wire shape already checked."""

    resource_type: str
    action: str
    resource_id: str
    resource_name: str
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    events: list[Event]
    #: False when every item replayed an earlier idempotency key (HTTP 200, not 201).
    is_new: bool


def _where(index: int | None, name: str) -> str:
    return name if index is None else f"events[{index}].{name}"


def _check_json(value: Any, where: str, *, max_depth: int) -> None:
    """Refuse text no database can store (NUL, lone surrogates) and nesting deeper than
    ``max_depth`` (a value at the top is level 1). Iterative: a hostile document cannot
    exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > max_depth:
            raise InvalidRequest(
                f"{where}: nested too deeply (at most {max_depth} levels).", field=where
            )
        if isinstance(item, dict):
            for k, v in item.items():
                if not is_storable(k):
                    _check_text(k, where)
                stack.append((v, level + 1))
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
        elif isinstance(item, str) and not is_storable(item):
            _check_text(item, where)


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise InvalidRequest(f"{where}: text may not contain NUL characters.", field=where)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(
            f"{where}: text must be valid Unicode (a lone surrogate was sent).", field=where
        ) from None


#: Compact JSON, built once (``json.dumps`` with options builds an encoder per call).
#: Not ASCII-escaped: the metadata limit is on UTF-8 bytes, as a producer counts them.
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_compact_lenient = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def _checked_metadata(
    metadata: dict[str, Any], where: str, *, max_bytes: int
) -> tuple[dict[str, Any], str | None]:
    """The metadata to store, checked and redacted, and its compact JSON text when that
    is what the store would write (None: let the store serialise it).

    The size is the UTF-8 length of compact JSON without ASCII escapes (what
    ``json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode()`` gives).
    One walk checks the depth and looks for secret keys; one ``json.dumps`` measures the
    size and, when nothing needs redacting, is the stored text. A NUL character always
    shows in that text as a ``\\u0000`` escape and a lone surrogate makes it unencodable;
    only then is the exact, slower check run (it names the problem).
    """
    if not metadata:
        # "{}" is 2 bytes: within any limit; a fresh dict so no caller shares ours.
        return {}, None
    # Depth first: serialising a hostile nesting to measure it would exhaust the stack.
    has_secret_key = _check_depth(metadata, where, max_depth=MAX_METADATA_DEPTH)
    try:
        text = _compact(metadata)
        stored: str | None = text
    except (TypeError, ValueError):
        # Not plain JSON (an in-process caller's value): measured as before, and the
        # store serialises (and refuses) it as it always did.
        text, stored = _compact_lenient(metadata), None
    if "\\u0000" in text:
        _check_json(metadata, where, max_depth=MAX_METADATA_DEPTH)
    try:
        size = len(text) if text.isascii() else len(text.encode())
    except UnicodeEncodeError:
        # Only a lone surrogate has no UTF-8 form: the exact check names it. (One inside
        # a non-JSON value's ``str`` passes it, and the store refuses that value.)
        _check_json(metadata, where, max_depth=MAX_METADATA_DEPTH)
        size = len(text.encode(errors="surrogatepass"))
    if size > max_bytes:
        raise InvalidRequest(
            f"{where}: at most {max_bytes} bytes of metadata; this has {size}.", field=where
        )
    # Every text ``SECRET_VALUE`` matches holds "afk_" or "bearer" (in any case), and
    # JSON never escapes ASCII letters: without either, no string needs redacting.
    folded = text.lower()
    if has_secret_key or "afk_" in folded or "bearer" in folded:
        return redact(metadata), None
    return metadata, stored


def _check_depth(value: dict[str, Any], where: str, *, max_depth: int) -> bool:
    """Refuse nesting deeper than ``max_depth`` (the document itself is level 1, as in
    ``_check_json``); return whether a key that names a secret holds a value."""
    try:
        return _walk(value, max_depth - 1)
    except _TooDeep:
        raise InvalidRequest(
            f"{where}: nested too deeply (at most {max_depth} levels).", field=where
        ) from None


class _TooDeep(Exception):
    pass


def _walk(item: dict[str, Any] | list[Any], levels_below: int) -> bool:
    # Recursion is bounded: a non-empty container with no level left below it raises.
    if not item:
        return False
    if levels_below == 0:
        raise _TooDeep
    has_secret_key = False
    if isinstance(item, dict):
        for k, v in item.items():
            if isinstance(v, dict | list):
                has_secret_key = _walk(v, levels_below - 1) or has_secret_key
            if not has_secret_key and is_secret_key(k) and v is not None and v != "":
                has_secret_key = True
    else:
        for v in item:
            if isinstance(v, dict | list):
                has_secret_key = _walk(v, levels_below - 1) or has_secret_key
    return has_secret_key


def redact(value: Any) -> Any:
    """``value`` with the values of secret-looking keys, and API keys or bearer tokens
    inside strings, key names included, replaced by ``[redacted]``.

    Every member is kept: a redacted key name that equals another name of its object
    gets the first free " (2)", " (3)"... in the object's order.
    """
    if isinstance(value, dict):
        out = {
            k: (REDACTED if is_secret_key(k) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
        if any(isinstance(k, str) and SECRET_VALUE.search(k) for k in out):
            return _redact_names(out)
        return out
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str) and SECRET_VALUE.search(value):
        return SECRET_VALUE.sub(REDACTED, value)
    return value


def _redact_names(members: dict[Any, Any]) -> dict[Any, Any]:
    def is_secret_name(name: Any) -> bool:
        return isinstance(name, str) and SECRET_VALUE.search(name) is not None

    # Names sent as they are keep their members; only redacted names are numbered, so
    # the result does not depend on where the producer put a plain "[redacted]".
    taken = {name for name in members if not is_secret_name(name)}
    out: dict[Any, Any] = {}
    for name, member in members.items():
        if is_secret_name(name):
            base = SECRET_VALUE.sub(REDACTED, name)
            name, n = base, 1
            while name in taken:
                n += 1
                name = f"{base} ({n})"
            taken.add(name)
        out[name] = member
    return out


def payload_hash(item: IngestItem, metadata: Any) -> str:
    """What a retry under the same idempotency key must repeat, as a SHA-256.

    ``metadata`` is the metadata as stored, secrets redacted: a hash over the secret
    values would let whoever reads the table confirm a guessed secret offline. Two
    payloads that differ only in a redacted text store the same event, so they are
    the same payload here too.

    Never raises for ``occurred_at``: a replay of a stored key is hashed without the
    bounds check, so it may carry any instant ``datetime`` can hold.
    """
    body = {
        "resourceType": item.resource_type,
        "action": item.action,
        "resourceId": item.resource_id,
        "resourceName": item.resource_name,
        "description": item.description,
        "metadata": metadata,
        "occurredAt": _instant(item.occurred_at) if item.occurred_at else None,
    }
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def _instant(occurred_at: datetime) -> str:
    # The instant, not its spelling: "+02:00" and "Z" forms of one moment are equal.
    try:
        return occurred_at.astimezone(UTC).isoformat()
    except OverflowError:
        # Its UTC time falls before year 1 or after 9999, so no stored event has it (a
        # stored occurredAt passed the bounds). Its own spelling has a non-zero offset,
        # so it hashes unlike every stored "+00:00" one: a replay is idempotency_key_reused.
        return occurred_at.isoformat()


# Wire value -> member, looked up per item without the Enum call's exception path.
_RESOURCE_TYPES = {t.value: t for t in ResourceType}
_ACTIONS = {a.value: a for a in Action}


@functools.lru_cache(maxsize=256)
def _api_key_source(prefix: str) -> Source:
    # Source is frozen: one instance per key prefix is shared by its events.
    return Source(kind=SourceKind.API_KEY, api_key_prefix=prefix)


def _occurred_at_error(
    occurred_at: datetime, index: int | None, now: datetime
) -> InvalidRequest | None:
    if occurred_at < now - MAX_PAST:
        return InvalidRequest(
            f"{_where(index, 'occurredAt')}: events may be at most 365 days old.",
            field=_where(index, "occurredAt"),
        )
    if occurred_at > now + MAX_FUTURE:
        return InvalidRequest(
            f"{_where(index, 'occurredAt')}: events may be at most 5 minutes in the "
            "future; check the producer's clock.",
            field=_where(index, "occurredAt"),
        )
    return None


def _draft(
    item: IngestItem,
    index: int | None,
    *,
    key: ApiKey,
    now: datetime,
    max_metadata_bytes: int,
    is_stored_key: Callable[[str], bool],
) -> EventDraft:
    resource_type = _RESOURCE_TYPES.get(item.resource_type)
    if resource_type is None:
        allowed = ", ".join(t.value for t in ResourceType)
        raise InvalidRequest(
            f"{_where(index, 'resourceType')}: {item.resource_type[:40]!r} is not one of: "
            f"{allowed}.",
            field=_where(index, "resourceType"),
        )
    if resource_type not in INGESTIBLE_TYPES:
        raise InvalidRequest(
            f"{_where(index, 'resourceType')}: '{resource_type.value}' events are recorded by "
            "the platform itself and cannot be ingested.",
            code="type_not_ingestible",
            field=_where(index, "resourceType"),
        )
    action = _ACTIONS.get(item.action)
    if action is None:
        allowed = ", ".join(a.value for a in Action)
        raise InvalidRequest(
            f"{_where(index, 'action')}: {item.action[:40]!r} is not one of: {allowed}.",
            field=_where(index, "action"),
        )
    for name, text in (
        ("resourceId", item.resource_id),
        ("resourceName", item.resource_name),
        ("description", item.description),
        ("idempotencyKey", item.idempotency_key),
    ):
        if text is not None and not is_storable(text):
            _check_text(text, _where(index, name))
    if item.occurred_at is not None:
        bound_error = _occurred_at_error(item.occurred_at, index, now)
        # An event accepted near the 365-day limit leaves the window later, and a retry of
        # it must still get the original back: a stored key skips the bounds and the
        # idempotency check below decides (replay, or idempotency_key_reused).
        if bound_error is not None and not (
            item.idempotency_key is not None and is_stored_key(item.idempotency_key)
        ):
            raise bound_error
    metadata, metadata_json = _checked_metadata(
        item.metadata, _where(index, "metadata"), max_bytes=max_metadata_bytes
    )
    return EventDraft(
        workspace_id=key.workspace_id,
        resource_type=resource_type,
        action=action,
        resource_id=item.resource_id,
        resource_name=item.resource_name,
        actor=None,
        source=_api_key_source(key.prefix),
        description=item.description,
        metadata=metadata,
        occurred_at=item.occurred_at,
        idempotency_key=item.idempotency_key,
        payload_hash=payload_hash(item, metadata) if item.idempotency_key else None,
        metadata_json=metadata_json,
    )


def ingest_events(
    tx: Tx,
    *,
    key: ApiKey,
    items: Sequence[IngestItem],
    is_batch: bool,
    now: datetime,
    max_metadata_bytes: int,
) -> IngestResult:
    """Record a batch atomically: every item valid, or nothing stored.

    An item whose ``idempotencyKey`` was seen before in this workspace returns the
    original event instead of a new one; the same key with another payload is
    ``idempotency_key_reused``. Concurrent retries are safe: writers of one workspace
    are serialised (see ``lock_workspace``) and a unique index backs the rule.
    """
    if len(items) > MAX_BATCH:
        raise InvalidRequest(f"At most {MAX_BATCH} events per request.", field="events")
    if not items:
        raise InvalidRequest("The batch has no events.", field="events")

    def is_stored_key(idempotency_key: str) -> bool:
        # Only asked for an item outside the occurredAt window (rare): no lock needed,
        # a stored key is committed and never goes away.
        return bool(store.select_by_idempotency(tx, key.workspace_id, [idempotency_key]))

    drafts = [
        _draft(
            item,
            i if is_batch else None,
            key=key,
            now=now,
            max_metadata_bytes=max_metadata_bytes,
            is_stored_key=is_stored_key,
        )
        for i, item in enumerate(items)
    ]
    keys = [d.idempotency_key for d in drafts if d.idempotency_key]
    # Take the workspace lock before looking keys up, so a racing retry waits for us.
    account_store.lock_workspace(tx, key.workspace_id, exclusive=True)
    existing = store.select_by_idempotency(tx, key.workspace_id, keys)
    first_in_batch: dict[str, int] = {}
    fresh: list[EventDraft] = []
    slots: list[tuple[str, Any]] = []
    for i, d in enumerate(drafts):
        k = d.idempotency_key
        where = _where(i if is_batch else None, "idempotencyKey")
        if k is not None and k in existing:
            if existing[k].payload_hash != d.payload_hash:
                raise InvalidRequest(
                    f"{where}: this key was used before for a different event.",
                    code="idempotency_key_reused",
                    field=where,
                )
            slots.append(("old", existing[k]))
            continue
        if k is not None and k in first_in_batch:
            if drafts[first_in_batch[k]].payload_hash != d.payload_hash:
                raise InvalidRequest(
                    f"{where}: this key is used twice in the batch for different events.",
                    code="idempotency_key_reused",
                    field=where,
                )
            slots.append(("dup", first_in_batch[k]))
            continue
        if k is not None:
            first_in_batch[k] = i
        slots.append(("new", len(fresh)))
        fresh.append(d)
    recorded = record_events(tx, fresh, now=now)
    by_draft_index = {i: recorded[pos] for i, (kind, pos) in enumerate(slots) if kind == "new"}
    out: list[Event] = []
    for i, (kind, value) in enumerate(slots):
        if kind == "old":
            out.append(value)
        elif kind == "new":
            out.append(by_draft_index[i])
        else:
            out.append(by_draft_index[value])
    return IngestResult(events=out, is_new=bool(fresh))
