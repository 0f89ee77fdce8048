"""Verifying the events' hash chain: in the database, and offline in an export.

The rules live in ``domain/chain.py``; ``store/chain.py`` reads the rows. Both checks
stream, so memory does not grow with history.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from activityfeed.domain import chain
from activityfeed.errors import InvalidRequest, NotFound
from activityfeed.store import chain as chain_store
from activityfeed.store import exports as export_store
from activityfeed.store.db import Tx


def verify_workspaces(
    tx: Tx, *, slug: str | None = None, anchor: chain.Head | None = None
) -> list[tuple[str, chain.Report]]:
    """(slug, report) for every workspace, or for the one with ``slug``, in slug order.

    Run it in one read transaction: a workspace's events and checkpoints are committed
    together, so a snapshot never shows half a batch. ``anchor`` (a head kept elsewhere)
    needs ``slug``. Raises ``NotFound`` for an unknown slug.
    """
    found = chain_store.select_workspaces(tx, slug)
    if slug is not None and not found:
        raise NotFound(f"No workspace has the slug {slug!r}.")
    if anchor is not None and slug is None:
        raise ValueError("an anchor names the head of one workspace")
    return [
        (
            ws_slug,
            chain.check(
                workspace_id,
                chain_store.iter_checkpoints(tx, workspace_id),
                chain_store.iter_leaves(tx, workspace_id),
                anchors=[anchor] if anchor else [],
            ),
        )
        for workspace_id, ws_slug in found
    ]


# ---- the export's chain.jsonl ------------------------------------------------------------

_I = {name: i for i, name in enumerate(chain.FIELDS)}
#: Stored values the export's public event record cannot give back exactly.
_LOSSY = (
    ("actor_id", "actorId"),
    ("actor_name", "actorName"),
    ("actor_email", "actorEmail"),
    ("source_key_prefix", "sourceKeyPrefix"),
)


def _public_lossy(values: Sequence[Any]) -> tuple[Any, ...]:
    """What a verifier reads back from the public record for the ``_LOSSY`` columns
    (``event_json`` shows an actor only with an id, and "" for a missing name)."""
    actor_id = values[_I["actor_id"]]
    prefix = values[_I["source_key_prefix"]]
    if actor_id:
        name, email = values[_I["actor_name"]] or "", values[_I["actor_email"]] or ""
        return (actor_id, name, email, prefix or None)
    return (None, None, None, prefix or None)


def chain_records(tx: Tx, *, user_id: str, workspace_ids: Sequence[str]) -> Iterator[str]:
    """``chain.jsonl``, as encoded lines: per workspace, in position order, what an
    offline verifier needs besides ``events.jsonl``: for each event the user sees, its
    stored fields that the public record leaves out; for each other user's private event
    only its leaf hash; each checkpoint after its last event; and the head. See
    docs/export.md.
    """
    for workspace_id in workspace_ids:
        yield from _workspace_chain(tx, user_id, workspace_id)


def _checkpoint_line(workspace_id: str, cp: chain.Checkpoint) -> dict[str, Any]:
    return {
        "workspaceId": workspace_id,
        "checkpoint": {
            "firstOrd": cp.first_ord,
            "lastOrd": cp.last_ord,
            "version": cp.version,
            "digest": cp.digest,
        },
    }


_encode_line = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: JSON's own quoting of one string (what the encoder above does for each string).
_quote: Callable[[str], str] = json.encoder.encode_basestring
_ORD, _SEQ, _ID, _PRIVATE, _KEY, _HASH, _RECORDED = (
    _I[n]
    for n in ("ws_ord", "seq", "id", "private_to", "idempotency_key", "payload_hash", "recorded_at")
)
_ACTOR_ID, _ACTOR_NAME, _ACTOR_EMAIL, _PREFIX = (_I[column] for column, _ in _LOSSY)
#: The one canonical version whose leaves hash ``seq``, so whose lines must give it.
_WITH_SEQ = 1


def _line(record: dict[str, Any]) -> str:
    return _encode_line(record) + "\n"


def _quote_or_null(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def reference_chain_record(
    workspace_id: str, user_id: str, values: Sequence[Any], version: int = chain.VERSION
) -> dict[str, Any]:
    """The ``chain.jsonl`` record of one event, from its values as
    ``store.chain.iter_stored`` gives them, for a checkpoint of canonical ``version``
    (one of ``chain.VERSIONS``), built the plain way: the form that ``chain_line`` spells
    directly, and what it falls back on for the rare line with a ``stored`` part.

    Only version 1 gives ``seq``: its leaves cannot be recomputed without it.
    """
    position = int(values[_ORD])
    owner = values[_PRIVATE]
    if owner is not None and owner != user_id:
        # Another user's private event: its hash, never its content.
        return {
            "workspaceId": workspace_id,
            "wsOrd": position,
            "leaf": chain.leaf(values, version).hex(),
        }
    record: dict[str, Any] = {"workspaceId": workspace_id, "wsOrd": position, "id": values[_ID]}
    if version == _WITH_SEQ:
        # The global counter: it tells how much other workspaces recorded in between,
        # which is why version 2 leaves it out (ADR 0003, "Version 2").
        record["seq"] = values[_SEQ]
    record |= {
        "recordedAt": _exact(values[_RECORDED]),
        "privateTo": owner,
        "idempotencyKey": values[_KEY],
        "payloadHash": values[_HASH],
    }
    public = _public_lossy(values)
    for (column, key), shown in zip(_LOSSY, public, strict=True):
        if values[_I[column]] != shown:
            record.setdefault("stored", {})[key] = values[_I[column]]
    return record


def chain_line(
    workspace_id: str, user_id: str, row: Sequence[Any], version: int = chain.VERSION
) -> str:
    """The encoded ``chain.jsonl`` line of one event, from a row of
    ``export_store.iter_chain_rows`` (times as text, metadata as JSON text), for a
    checkpoint of canonical ``version`` (one of ``chain.VERSIONS``).

    Spelled directly for the usual line (an event the user sees whose public record
    shows its actor and key prefix exactly): the recording time sliced from its text,
    the strings quoted as ``json`` quotes them. The others go through
    ``reference_chain_record``; tests hold the two to each other.
    """
    owner = row[_PRIVATE]
    actor_id, name, email = row[_ACTOR_ID], row[_ACTOR_NAME], row[_ACTOR_EMAIL]
    # What _public_lossy gives back unchanged: no "stored" part.
    exact = (
        (name is not None and email is not None)
        if actor_id
        else (actor_id is None and name is None and email is None)
    ) and row[_PREFIX] != ""
    if not exact or (owner is not None and owner != user_id):
        return _line(
            reference_chain_record(workspace_id, user_id, export_store.chain_values(row), version)
        )
    recorded = row[_RECORDED]
    seq = f',"seq":{int(row[_SEQ])}' if version == _WITH_SEQ else ""
    return (
        f'{{"workspaceId":{_quote(workspace_id)},"wsOrd":{int(row[_ORD])},'
        f'"id":{_quote(row[_ID])}{seq},'
        f'"recordedAt":"{recorded[:10]}T{recorded[11:]}Z","privateTo":{_quote_or_null(owner)},'
        f'"idempotencyKey":{_quote_or_null(row[_KEY])},'
        f'"payloadHash":{_quote_or_null(row[_HASH])}}}\n'
    )


def _workspace_chain(tx: Tx, user_id: str, workspace_id: str) -> Iterator[str]:
    checkpoints = chain_store.iter_checkpoints(tx, workspace_id)
    cp = next(checkpoints, None)
    head = chain.Head(0, chain.genesis(workspace_id).hex())
    for rows in export_store.iter_chain_rows(tx, workspace_id):
        for row in rows:
            position = int(row[_ORD])
            # Each checkpoint follows the last event it covers.
            while cp is not None and cp.last_ord < position:
                head = chain.Head(cp.last_ord, cp.digest)
                yield _line(_checkpoint_line(workspace_id, cp))
                cp = next(checkpoints, None)
            # A line is written for the version of the checkpoint that covers it. An
            # event no checkpoint covers, or one of an unknown version, cannot verify
            # anyway: its line is the current version's, which gives no seq.
            version = chain.VERSION
            if cp is not None and cp.first_ord <= position and cp.version in chain.VERSIONS:
                version = cp.version
            yield chain_line(workspace_id, user_id, row, version)
    while cp is not None:
        head = chain.Head(cp.last_ord, cp.digest)
        yield _line(_checkpoint_line(workspace_id, cp))
        cp = next(checkpoints, None)
    yield _line({"workspaceId": workspace_id, "head": str(head)})


def _exact(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class _Peek:
    """An iterator of JSON lines one can look one line ahead in."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        self._lines = lines
        self.head: dict[str, Any] | None = None
        self.advance()

    def advance(self) -> None:
        line = next(self._lines, None)
        self.head = json.loads(line) if line is not None else None

    def take(self, workspace_id: str, key: str) -> Iterator[dict[str, Any]]:
        """The next lines of ``workspace_id`` that hold ``key`` (others are skipped)."""
        while self.head is not None and self.head.get("workspaceId") == workspace_id:
            record = self.head
            self.advance()
            if key in record:
                yield record


def _export_leaf(event: dict[str, Any], extra: dict[str, Any]) -> chain.Leaf:
    actor = event.get("actor")
    shown = {
        "actorId": actor["id"] if actor else None,
        "actorName": actor["name"] if actor else None,
        "actorEmail": actor["email"] if actor else None,
        "sourceKeyPrefix": event["source"].get("apiKeyPrefix"),
    }
    shown |= extra.get("stored", {})
    # Lines under version-2 checkpoints give no seq, and their leaves do not need it.
    seq = extra.get("seq")
    values = (
        seq,
        event["id"],
        event["workspaceId"],
        extra["wsOrd"],
        event["resourceType"],
        event["action"],
        event["resourceId"],
        event["resourceName"],
        event["description"],
        shown["actorId"],
        shown["actorName"],
        shown["actorEmail"],
        event["source"]["kind"],
        shown["sourceKeyPrefix"],
        _moment(event["createdAt"]),
        _moment(extra["recordedAt"]),
        event["metadata"],
        extra["privateTo"],
        extra["idempotencyKey"],
        extra["payloadHash"],
    )
    return chain.Leaf(
        ws_ord=int(extra["wsOrd"]), seq=None if seq is None else int(seq), values=values
    )


def _export_leaves(workspace_id: str, events: _Peek, extras: _Peek) -> Iterator[chain.Leaf]:
    """The leaves of one workspace: each visible event (``events.jsonl`` with its
    ``chain.jsonl`` line) or hidden one (its ``leaf``), in position order."""
    for extra in extras.take(workspace_id, "wsOrd"):
        if "leaf" in extra:
            yield chain.Leaf(
                ws_ord=int(extra["wsOrd"]), seq=None, hash=bytes.fromhex(extra["leaf"])
            )
            continue
        event = events.head
        if event is None or event.get("id") != extra.get("id"):
            # events.jsonl and chain.jsonl disagree: a record was removed, added or moved.
            # Hash the chain line alone: it cannot match, so the break names this place.
            yield chain.Leaf(ws_ord=int(extra["wsOrd"]), seq=None, hash=b"")
            continue
        events.advance()
        yield _export_leaf(event, extra)


def verify_export(
    path: Path, *, slug: str | None = None, anchor: chain.Head | None = None
) -> list[tuple[str, chain.Report]]:
    """Verify a personal-data export offline: (slug, report) per workspace in the file.

    Each workspace's events (``events.jsonl`` with ``chain.jsonl``) must hash to its
    checkpoints and reach the head the file states (and ``anchor``, with ``slug``).
    The members are streamed side by side, so memory does not grow with the file.
    Raises ``InvalidRequest`` for a file that is not such an export.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InvalidRequest(f"{path} is not a ZIP file: {exc}.") from None
    with zf:
        names = set(zf.namelist())
        if not {"workspaces.jsonl", "events.jsonl", "chain.jsonl"} <= names:
            raise InvalidRequest(f"{path} is not an export with a chain.jsonl part.")
        spaces = [json.loads(line) for line in zf.open("workspaces.jsonl")]
        with (
            zf.open("events.jsonl") as ev,
            zf.open("chain.jsonl") as c1,
            zf.open("chain.jsonl") as c2,
            zf.open("chain.jsonl") as c3,
        ):
            events, extras, cps, heads = (
                _Peek(iter(ev)),
                _Peek(iter(c1)),
                _Peek(iter(c2)),
                _Peek(iter(c3)),
            )
            out = []
            for space in spaces:
                workspace_id = space["id"]
                checkpoints = (
                    chain.Checkpoint(
                        first_ord=int(c["checkpoint"]["firstOrd"]),
                        last_ord=int(c["checkpoint"]["lastOrd"]),
                        digest=str(c["checkpoint"]["digest"]),
                        version=int(c["checkpoint"]["version"]),
                    )
                    for c in cps.take(workspace_id, "checkpoint")
                )
                stated = [chain.Head.parse(h["head"]) for h in heads.take(workspace_id, "head")]
                # The head the file states (a file cut short or edited misses it), and
                # the one the caller kept elsewhere.
                wanted = stated[:1] or [chain.Head(0, "missing")]
                if anchor is not None and space["slug"] == slug:
                    wanted.append(anchor)
                report = chain.check(
                    workspace_id,
                    checkpoints,
                    _export_leaves(workspace_id, events, extras),
                    anchors=wanted,
                )
                # Whatever of this workspace was not consumed (after a break) is skipped.
                for stream in (events, extras, cps):
                    for _ in stream.take(workspace_id, ""):
                        pass
                if slug is None or space["slug"] == slug:
                    out.append((space["slug"], report))
            if slug is not None and not out:
                raise NotFound(f"The export has no workspace with the slug {slug!r}.")
            return out
