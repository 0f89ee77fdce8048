"""The personal-data (GDPR) export: one ZIP of everything about a user, streamed.

``export_archive`` yields the bytes of the ZIP as it is written, inside the caller's
one read transaction (a consistent snapshot). The web route and the CLI both stream
these bytes, so they produce the same file. The file format is documented in
docs/export.md; its records are camelCase like the HTTP API because both the web and
the CLI write them (and neither may import the other's serialisers).

Memory stays flat: events are read in keyset chunks of ``EVENTS_CHUNK`` rows, each
chunk is compressed into a small in-memory sink, and the sink is drained (yielded)
after every chunk. ``zipfile`` writes to an unseekable stream by putting each member's
sizes and CRC in a data descriptor after its data, so nothing is ever rewritten.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

from activityfeed.domain import profiles
from activityfeed.domain.accounts import User
from activityfeed.domain.resources import Resource, Upload
from activityfeed.errors import NotFound
from activityfeed.services import integrity
from activityfeed.services.accounts import normalise_email
from activityfeed.services.events import rfc3339
from activityfeed.services.settings import get_profile
from activityfeed.store import accounts as account_store
from activityfeed.store import events as event_store
from activityfeed.store import exports as export_store
from activityfeed.store import resources as resource_store
from activityfeed.store import states as state_store
from activityfeed.store.db import Tx

FORMAT = "activityfeed-export"
FORMAT_VERSION = 1
EVENTS_CHUNK = 1000
#: zlib level 1: JSON Lines still shrink about tenfold, and deflate at the default level
#: (6) took a third of an export's CPU time.
COMPRESS_LEVEL = 1
#: Resources are read this many at a time (with one query for their uploads).
RESOURCE_CHUNK = 500
#: The members, in the order they appear in the archive (the manifest comes last).
PARTS = (
    "profile.json",
    "workspaces.jsonl",
    "api_keys.jsonl",
    "resources.jsonl",
    "events.jsonl",
    "chain.jsonl",
    "manifest.json",
)


_iso = rfc3339


def _json(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode()


#: Built once: ``json.dumps`` with options builds an encoder per call (per line).
_encode_line = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _line(record: dict[str, Any]) -> str:
    return _encode_line(record) + "\n"


def find_user(tx: Tx, email: str) -> User:
    """The user with this e-mail (any case); ``NotFound`` when there is none."""
    found = account_store.select_user_by_email(tx, normalise_email(email))
    if found is None:
        raise NotFound(f"No user has the e-mail {email}.")
    return found[0]


# ---- the parts ---------------------------------------------------------------------------


def build_profile(tx: Tx, user: User) -> dict[str, Any]:
    """``profile.json``: the account and everything the user set in Settings."""
    v = get_profile(tx, user_id=user.id).values
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "createdAt": _iso(user.created_at),
        "bio": v[profiles.BIO],
        "company": v[profiles.COMPANY],
        "timezone": v[profiles.TIMEZONE],
        "notifications": {
            "trainingFailures": v[profiles.TRAINING_FAILURES],
            "weeklyDigest": v[profiles.WEEKLY_DIGEST],
            "emailDigest": v[profiles.EMAIL_DIGEST],
        },
    }


def _workspace_records(joined: list[export_store.JoinedMembership]) -> Iterator[dict[str, Any]]:
    for j in joined:
        ws = j.membership.workspace
        yield {
            "id": ws.id,
            "slug": ws.slug,
            "name": ws.name,
            "isPersonal": ws.is_personal,
            "createdAt": _iso(ws.created_at),
            "role": j.membership.role.value,
            "joinedAt": _iso(j.joined_at),
        }


def _api_key_records(keys: list[export_store.OwnKey]) -> Iterator[dict[str, Any]]:
    # Built field by field from a row that never held the secret hash: nothing else
    # about a key can reach the archive.
    for own in keys:
        k = own.key
        yield {
            "id": k.id,
            "name": k.name,
            "prefix": k.prefix,
            "scopes": [s.value for s in k.scopes],
            "workspaceId": k.workspace_id,
            "workspace": own.workspace_slug,
            "createdAt": _iso(k.created_at),
            "lastUsedAt": _iso(k.last_used_at),
            "revokedAt": _iso(k.revoked_at),
        }


def iter_resources(
    tx: Tx, *, user: User, joined: list[export_store.JoinedMembership]
) -> Iterator[dict[str, Any]]:
    """``resources.jsonl``: every project, dataset and model of the user's workspaces
    (live, in Trash or deleted, with their uploads' metadata), read in keyset chunks."""
    del user  # Every member sees every resource of the workspace.
    for j in joined:
        ws = j.membership.workspace.id
        after = ""
        while chunk := resource_store.select_resources_after(
            tx, workspace_id=ws, after_id=after, limit=RESOURCE_CHUNK
        ):
            files: dict[str, list[Upload]] = {}
            for u in resource_store.select_uploads_of(
                tx, workspace_id=ws, resource_ids=[r.id for r in chunk]
            ):
                files.setdefault(u.resource_id, []).append(u)
            for r in chunk:
                yield _resource_record(r, files.get(r.id, []))
            after = chunk[-1].id


def _resource_record(r: Resource, files: list[Upload]) -> dict[str, Any]:
    return {
        "id": r.id,
        "workspaceId": r.workspace_id,
        "kind": r.kind.value,
        "name": r.name,
        "description": r.description,
        "isPublic": r.is_public,
        "status": r.status.value,
        "createdBy": r.created_by,
        "createdAt": _iso(r.created_at),
        "updatedAt": _iso(r.updated_at),
        "trashedAt": _iso(r.trashed_at),
        "purgeAfter": _iso(r.purge_after),
        "deletedAt": _iso(r.deleted_at),
        "clonedFrom": r.cloned_from,
        "uploads": [
            {
                "id": u.id,
                "filename": u.filename,
                "contentType": u.content_type,
                "sizeBytes": u.size_bytes,
                "sha256": u.sha256,
                "createdAt": _iso(u.created_at),
            }
            for u in files
        ],
    }


#: JSON's quoting of one string, as the line encoder does it (``ensure_ascii=False``):
#: the C function that ``json`` itself calls for every string.
_quote: Callable[[str], str] = json.encoder.encode_basestring
_BOOL = ("false", "true")


def stored_time_rfc3339(text: str) -> str:
    """The export's time (``rfc3339``: UTC with a ``Z``, microseconds only when there
    are some) of a time text of the store (``export_store.TIME_TEXT_FORMAT``), by
    slicing: ``2026-11-26 09:15:02.123456`` → ``2026-11-26T09:15:02.123456Z``."""
    if text.endswith(".000000"):
        return text[:10] + "T" + text[11:19] + "Z"
    return text[:10] + "T" + text[11:] + "Z"


class _Fragments:
    """The JSON of the values that repeat from line to line (a workspace id, an actor,
    a source, a type and an action), each encoded once and then looked up.

    Bounded, so that memory stays flat however many actors a history has.
    """

    LIMIT = 4096

    def __init__(self) -> None:
        self._actors: dict[tuple[str | None, str | None, str | None], str] = {}
        self._sources: dict[tuple[str, str | None], str] = {}
        self._texts: dict[str, str] = {}

    def actor(self, actor_id: str | None, name: str | None, email: str | None) -> str:
        key = (actor_id, name, email)
        found = self._actors.get(key)
        if found is None:
            if len(self._actors) >= self.LIMIT:
                self._actors.clear()
            found = self._actors[key] = (
                f'{{"id":{_quote(actor_id)},"name":{_quote(name or "")},'
                f'"email":{_quote(email or "")}}}'
                if actor_id
                else "null"
            )
        return found

    def source(self, kind: str, prefix: str | None) -> str:
        key = (kind, prefix)
        found = self._sources.get(key)
        if found is None:
            if len(self._sources) >= self.LIMIT:
                self._sources.clear()
            found = self._sources[key] = (
                f'{{"kind":{_quote(kind)},"apiKeyPrefix":{_quote(prefix)}}}'
                if prefix
                else f'{{"kind":{_quote(kind)}}}'
            )
        return found

    def text(self, value: str) -> str:
        found = self._texts.get(value)
        if found is None:
            if len(self._texts) >= self.LIMIT:
                self._texts.clear()
            found = self._texts[value] = _quote(value)
        return found


def event_line(row: export_store.ExportRow, fragments: _Fragments | None = None) -> str:
    """One ``events.jsonl`` line: the feed's event JSON (``event_json``'s fields, in its
    order) with this user's state.

    Spelled directly from the stored values (``export_store.ExportRow``), with no dict
    and no encoder call: each string goes through the quoting ``json`` itself uses, the
    stored metadata text (already a JSON object) goes in as it is, the time text is
    sliced into RFC 3339, and what repeats (workspace, actor, source, type, action) is
    encoded once per export in ``fragments``. ``reference_event_line`` is the same line
    built the plain way; tests hold the two to each other.
    """
    f = fragments or _Fragments()
    (
        _seq, event_id, workspace_id, resource_type, action, resource_id, resource_name,
        description, actor_id, actor_name, actor_email, source_kind, prefix, created,
        metadata, is_seen, is_archived,
    ) = row  # fmt: skip
    if metadata is None or metadata == "null":
        metadata = "{}"
    return (
        f'{{"id":{_quote(event_id)},"workspaceId":{f.text(workspace_id)},'
        f'"resourceType":{f.text(resource_type)},"resourceId":{_quote(resource_id)},'
        f'"resourceName":{_quote(resource_name)},"action":{f.text(action)},'
        f'"description":{_quote(description)},'
        f'"actor":{f.actor(actor_id, actor_name, actor_email)},'
        f'"source":{f.source(source_kind, prefix)},'
        f'"createdAt":"{stored_time_rfc3339(created)}","metadata":{metadata},'
        f'"seen":{_BOOL[is_seen]},"archived":{_BOOL[is_archived]}}}\n'
    )


def reference_event_line(row: export_store.ExportRow) -> str:
    """``event_line`` built the plain way (a dict through the JSON encoder, the time
    parsed and formatted by ``rfc3339``): the form the fast line must equal."""
    (
        _seq, event_id, workspace_id, resource_type, action, resource_id, resource_name,
        description, actor_id, actor_name, actor_email, source_kind, prefix, created,
        metadata, is_seen, is_archived,
    ) = row  # fmt: skip
    record = {
        "id": event_id,
        "workspaceId": workspace_id,
        "resourceType": resource_type,
        "resourceId": resource_id,
        "resourceName": resource_name,
        "action": action,
        "description": description,
        "actor": (
            {"id": actor_id, "name": actor_name or "", "email": actor_email or ""}
            if actor_id
            else None
        ),
        "source": (
            {"kind": source_kind, "apiKeyPrefix": prefix} if prefix else {"kind": source_kind}
        ),
        "createdAt": _iso(export_store.parse_time_text(created)),
        "metadata": None,
        "seen": bool(is_seen),
        "archived": bool(is_archived),
    }
    text = metadata if metadata not in (None, "null") else "{}"
    return _line(record).replace('"metadata":null', '"metadata":' + text, 1)


def count_events(tx: Tx, user_id: str) -> int:
    """How many events the export will hold (for a progress bar).

    Uses the watermark arithmetic (dense ``ws_ord`` less other users' private events),
    so it does not scan history.
    """
    total = 0
    for j in export_store.select_joined_memberships(tx, user_id):
        ws = j.membership.workspace.id
        _, head_ord = event_store.select_head(tx, ws)
        total += state_store.count_visible(tx, user_id=user_id, workspace_id=ws, head_ord=head_ord)
    return total


# ---- the archive -------------------------------------------------------------------------


class _Sink:
    """A write-only, unseekable buffer that the generator empties after every chunk.

    It has no ``tell``/``seek``, so ``zipfile`` treats it as a stream and writes data
    descriptors instead of seeking back to patch local headers.
    """

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        if data:
            self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def drain(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def _member(zf: zipfile.ZipFile, name: str, now: datetime) -> IO[bytes]:
    info = zipfile.ZipInfo(name, date_time=now.astimezone(UTC).timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    # Python 3.11 and 3.12 keep a member's level in this attribute (3.13 aliases it to
    # ``compress_level``); a ZipInfo passed to ``open`` does not take the archive's.
    setattr(info, "_compresslevel", COMPRESS_LEVEL)  # noqa: B010 - see above
    info.external_attr = 0o600 << 16
    # The size is not known in advance: Zip64 lets a long history pass 4 GiB.
    return zf.open(info, "w", force_zip64=True)


def _write_jsonl(
    zf: zipfile.ZipFile,
    sink: _Sink,
    name: str,
    records: Iterable[dict[str, Any] | str],
    *,
    now: datetime,
    counts: dict[str, int],
) -> Iterator[bytes]:
    """Write a JSON Lines member, yielding the compressed bytes every ``EVENTS_CHUNK``
    records (dicts, or lines already encoded); its record count goes into ``counts``
    once it is complete."""
    count = 0
    with _member(zf, name, now) as out:
        batch: list[str] = []
        for record in records:
            batch.append(record if isinstance(record, str) else _line(record))
            if len(batch) >= EVENTS_CHUNK:
                out.write("".join(batch).encode())
                count += len(batch)
                batch.clear()
                if chunk := sink.drain():
                    yield chunk
        out.write("".join(batch).encode())
        count += len(batch)
    counts[name] = count
    if chunk := sink.drain():
        yield chunk


def _event_records(
    tx: Tx,
    *,
    user: User,
    joined: list[export_store.JoinedMembership],
    progress: Callable[[int], None] | None,
) -> Iterator[str]:
    """Every event the user can see, workspace by workspace, in arrival order."""
    fragments = _Fragments()
    for j in joined:
        ws = j.membership.workspace.id
        marks = state_store.select_marks(tx, user_id=user.id, workspace_id=ws)
        for rows in export_store.iter_visible_by_arrival(
            tx, viewer_id=user.id, workspace_id=ws, marks=marks, chunk=EVENTS_CHUNK
        ):
            for row in rows:
                yield event_line(row, fragments)
            if progress is not None:
                progress(len(rows))


def export_archive(
    tx: Tx,
    *,
    user_id: str,
    now: datetime,
    progress: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """The user's export as a stream of ZIP bytes (see docs/export.md for the format).

    Everything is read with ``tx``, which should be one read transaction, so every part
    describes the same moment. ``progress`` is called with the number of events written
    after each chunk. Raises ``NotFound`` (before the first byte) for an unknown user.
    The stream is complete only when the generator finishes: ``manifest.json`` and the
    ZIP's central directory come last, so a cut-off download is not a valid ZIP.
    """
    user = account_store.select_user(tx, user_id)
    if user is None:
        raise NotFound("This user does not exist.")
    return _archive(tx, user=user, now=now, progress=progress)


def _archive(
    tx: Tx, *, user: User, now: datetime, progress: Callable[[int], None] | None
) -> Iterator[bytes]:
    sink = _Sink()
    counts: dict[str, int] = {}
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with _member(zf, "profile.json", now) as out:
            out.write(_json(build_profile(tx, user)))
        counts["profile.json"] = 1
        yield sink.drain()

        joined = export_store.select_joined_memberships(tx, user.id)
        keys = export_store.select_keys_created_by(tx, user.id)
        parts: list[tuple[str, Iterable[dict[str, Any] | str]]] = [
            ("workspaces.jsonl", _workspace_records(joined)),
            ("api_keys.jsonl", _api_key_records(keys)),
            ("resources.jsonl", iter_resources(tx, user=user, joined=joined)),
            ("events.jsonl", _event_records(tx, user=user, joined=joined, progress=progress)),
            (
                "chain.jsonl",
                integrity.chain_records(
                    tx, user_id=user.id, workspace_ids=[j.membership.workspace.id for j in joined]
                ),
            ),
        ]
        for name, records in parts:
            yield from _write_jsonl(zf, sink, name, records, now=now, counts=counts)

        # Last, so that its counts describe what was actually written.
        manifest = {
            "format": FORMAT,
            "formatVersion": FORMAT_VERSION,
            "exportedAt": _iso(now),
            "user": {"id": user.id, "email": user.email},
            "parts": counts,
        }
        with _member(zf, "manifest.json", now) as out:
            out.write(_json(manifest))
    yield sink.drain()
