"""Events: insertion, the newest-first feed, search and arrival-order counts.

Every query here is scoped by ``workspace_id`` and by the viewer's visibility
(``private_to IS NULL OR private_to = viewer``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from itertools import product
from typing import Any, NamedTuple

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    column,
    false,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    union_all,
)

from activityfeed.domain import chain
from activityfeed.domain.events import (
    Action,
    Actor,
    Event,
    EventDraft,
    ResourceState,
    ResourceType,
    Source,
    SourceKind,
)
from activityfeed.domain.query import ActivityQuery, Cursor, case_variants, fold_case
from activityfeed.domain.state import Watermarks
from activityfeed.store import chain as chain_store
from activityfeed.store.db import Tx
from activityfeed.store.schema import (
    LIMIT_ONE,
    event_day_counts,
    event_day_totals,
    event_states,
    events,
    resources,
)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A draft with the values ``record_event`` decided: id, times and description."""

    draft: EventDraft
    id: str
    created_at: datetime
    recorded_at: datetime
    description: str


def to_event(row: Any) -> Event:
    actor = (
        Actor(id=row.actor_id, name=row.actor_name or "", email=row.actor_email or "")
        if row.actor_id
        else None
    )
    return Event(
        seq=row.seq,
        id=row.id,
        workspace_id=row.workspace_id,
        resource_type=ResourceType(row.resource_type),
        action=Action(row.action),
        resource_id=row.resource_id,
        resource_name=row.resource_name,
        description=row.description,
        actor=actor,
        source=Source(kind=SourceKind(row.source_kind), api_key_prefix=row.source_key_prefix),
        created_at=row.created_at,
        recorded_at=row.recorded_at,
        metadata=row.metadata or {},
        private_to=row.private_to,
        idempotency_key=row.idempotency_key,
        payload_hash=getattr(row, "payload_hash", None),
    )


def newest_first_in_workspace() -> ColumnElement[Any]:
    """The order of one workspace's events, newest first, for a ``LIMIT 1`` head read.

    ``ws_ord`` follows ``seq`` within a workspace (``insert_events``), so this is also
    newest by ``seq``. Ordering by ``seq`` let PostgreSQL, once it has statistics that
    say a workspace holds a fifth of the table, walk the primary key backwards and
    filter out every newer event of the other workspaces (80,000 rows, 9 ms, in the
    benchmark); only ``ux_events_ord`` gives ``ws_ord`` order, so this plan is the
    only one without a sort: one index entry.
    """
    return events.c.ws_ord.desc()


#: The head read (``select_head``); ``states.select_marks_and_head`` reads it beside the
#: viewer's watermarks.
HEAD = (
    select(events.c.seq, events.c.ws_ord)
    .where(events.c.workspace_id == bindparam("ws"))
    .order_by(newest_first_in_workspace())
    .limit(LIMIT_ONE)
)


VISIBLE_HEAD = (
    select(events.c.seq)
    .where(
        events.c.workspace_id == bindparam("ws"),
        or_(events.c.private_to.is_(None), events.c.private_to == bindparam("viewer")),
    )
    .order_by(newest_first_in_workspace())
    .limit(LIMIT_ONE)
)


def select_visible_head_seq(tx: Tx, workspace_id: str, viewer_id: str) -> int:
    """The ``seq`` of the newest event of the workspace the viewer may see (0 for none).

    Walks ``ux_events_ord`` down from the head past other members' private events
    (their settings, their keys: few, and rarely the newest)."""
    value = tx.conn.execute(VISIBLE_HEAD, {"ws": workspace_id, "viewer": viewer_id}).scalar()
    return int(value or 0)


def select_head(tx: Tx, workspace_id: str) -> tuple[int, int]:
    """The newest event's (seq, ws_ord) in the workspace, or (0, 0) when it has none."""
    row = tx.conn.execute(HEAD, {"ws": workspace_id}).first()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def insert_events(
    tx: Tx,
    workspace_id: str,
    new: Sequence[NewEvent],
    *,
    head: chain_store.ChainHead | None = None,
) -> list[Event]:
    """Insert events of one workspace, in order, numbering them after the current head.

    The caller holds the workspace's write lock (``lock_workspace(exclusive=True)``) so
    that ``ws_ord`` stays dense and follows ``seq``. ``head`` is ``store.chain.select_head``
    as the caller read it under that lock (read here when not given). A batch costs a
    constant number of statements whatever its size: the head, the ``seq`` values, one
    bulk insert (``COPY`` on PostgreSQL, one ``executemany`` on SQLite) and, on SQLite,
    the statements of ``index_batch``, and the batch's hash-chain checkpoint
    (``store.chain``). Raises ``ValueError`` for a naive ``created_at``/``recorded_at``.
    """
    if not new:
        return []
    if head is None:
        # The head and the chain's newest digest in one statement (tamper evidence).
        head = chain_store.select_head(tx, workspace_id)
    head_ord = head.ws_ord
    seqs = _allocate_seqs(tx, len(new))
    is_pg = tx.dialect == "postgresql"
    # PostgreSQL takes aware datetimes as they are; SQLite stores fixed-width naive UTC
    # text (see ``schema.UTCDateTime``), converted here once per distinct value.
    stamp = _checked_utc if is_pg else sqlite_time
    recorded_at = new[0].recorded_at
    recorded = stamp(recorded_at)
    dumps = _compact_json
    out: list[Event] = []
    rows: list[tuple[Any, ...]] = []
    for i, (item, seq) in enumerate(zip(new, seqs, strict=True), start=1):
        d = item.draft
        actor = d.actor
        private_to = d.private_to
        rows.append(
            (
                seq,
                item.id,
                workspace_id,
                head_ord + i,
                d.resource_type.value,
                d.action.value,
                d.resource_id,
                d.resource_name,
                item.description,
                actor.id if actor else None,
                actor.name if actor else None,
                actor.email if actor else None,
                d.source.kind.value,
                d.source.api_key_prefix,
                stamp(item.created_at),
                recorded if item.recorded_at is recorded_at else stamp(item.recorded_at),
                d.metadata_json if d.metadata_json is not None else dumps(d.metadata),
                private_to,
                d.idempotency_key,
                d.payload_hash,
            )
        )
        out.append(
            Event(
                seq=seq,
                id=item.id,
                workspace_id=workspace_id,
                resource_type=d.resource_type,
                action=d.action,
                resource_id=d.resource_id,
                resource_name=d.resource_name,
                description=item.description,
                actor=actor,
                source=d.source,
                created_at=item.created_at,
                recorded_at=item.recorded_at,
                metadata=d.metadata,
                private_to=private_to,
                idempotency_key=d.idempotency_key,
                payload_hash=d.payload_hash,
            )
        )
    if is_pg:
        copy_rows(tx, "events", INSERT_COLUMNS, rows)
    else:
        # A plain executemany of ready tuples: RETURNING would make SQLite insert row by
        # row, and SQLAlchemy's per-row parameter processing cost more than the insert.
        tx.conn.exec_driver_sql(_SQLITE_INSERT, rows)
        index_batch(tx, seqs[0], seqs[-1])
    chain_store.append_checkpoint(
        tx,
        workspace_id,
        head,
        [chain_store.event_values(e, head_ord + i) for i, e in enumerate(out, start=1)],
    )
    return out


#: The columns an insert of events writes, in order (the bulk loader shares them).
#: The insert writes every column, in the order of the chain's canonical form (one list:
#: tests/unit/test_chain.py checks it names every column of ``events``).
INSERT_COLUMNS = chain.FIELDS
# Column names are constants and the values are parameters.
_SQLITE_INSERT = (
    f"INSERT INTO events ({', '.join(INSERT_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' for _ in INSERT_COLUMNS)})"
)


def _compact_json(value: Any) -> str:
    """The JSON text a metadata column stores: compact and not ASCII-escaped, the text
    ingestion measures against the metadata limit (and may hand over as
    ``EventDraft.metadata_json``)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _checked_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; give a UTC-aware one")
    return value


def sqlite_time(value: datetime) -> str:
    """``schema.UTCDateTime``'s SQLite text ("YYYY-MM-DD HH:MM:SS.ffffff", naive UTC)."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; give a UTC-aware one")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def copy_rows(tx: Tx, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """PostgreSQL: ``COPY table (columns) FROM STDIN`` with psycopg's copy protocol.

    One statement for the whole batch: statement-level triggers fire once, and no
    per-row protocol round trip or parse. ``table`` and ``columns`` are our constants.
    """
    raw: Any = tx.conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


#: SQLite's per-batch index statements (``index_batch``), shared with the bench floor.
#: The index holds the text folded by ``domain.query.fold_case`` (``af_fold``, registered
#: on every connection by ``store.db``), and its trigrams are case-sensitive: a search,
#: folded the same way, then matches what PostgreSQL's ILIKE matches (migration 0010).
FTS_BATCH_SQL = (
    "INSERT INTO events_fts(rowid, body) "
    "SELECT seq, af_fold(resource_name || ' ' || resource_type || ' ' || description) "
    "FROM events WHERE seq BETWEEN :lo AND :hi"
)
DAY_COUNTS_BATCH_SQL = (
    "INSERT INTO event_day_counts"
    "(workspace_id, day, private_to, resource_type, action, n) "
    "SELECT workspace_id, substr(created_at, 1, 10), coalesce(private_to, ''), "
    "resource_type, action, count(*) FROM events WHERE seq BETWEEN :lo AND :hi "
    "GROUP BY 1, 2, 3, 4, 5 "
    "ON CONFLICT(workspace_id, day, private_to, resource_type, action) "
    "DO UPDATE SET n = n + excluded.n"
)


def index_batch(tx: Tx, first_seq: int, last_seq: int) -> None:
    """SQLite: what triggers do on PostgreSQL, for the events with ``first_seq <= seq <=
    last_seq``, one statement each: the trigram search index and the per-day counts.

    Whoever inserts into ``events`` on SQLite calls this in the same transaction.
    """
    index_for_search(tx, first_seq, last_seq)
    tx.conn.execute(text(DAY_COUNTS_BATCH_SQL), {"lo": first_seq, "hi": last_seq})


def index_for_search(tx: Tx, first_seq: int, last_seq: int) -> None:
    """Add the events with ``first_seq <= seq <= last_seq`` to SQLite's trigram index.

    One statement per batch: FTS5 writes its pending terms at every statement boundary,
    so the per-row trigger this replaces wrote one tiny index segment per event.
    Whoever inserts into ``events`` on SQLite calls this in the same transaction.
    """
    tx.conn.execute(text(FTS_BATCH_SQL), {"lo": first_seq, "hi": last_seq})


def _allocate_seqs(tx: Tx, n: int) -> list[int]:
    """``n`` fresh, increasing ``seq`` values.

    PostgreSQL hands them out from the column's sequence. SQLite has one writer at a
    time (every write transaction is BEGIN IMMEDIATE), so the next values after the
    current maximum are ours until we commit.
    """
    if tx.dialect == "postgresql":
        rows = tx.conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('events', 'seq')) "
                "FROM generate_series(1, :n)"
            ),
            {"n": n},
        )
        return sorted(int(r[0]) for r in rows)
    top = tx.conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + n))


def select_by_idempotency(tx: Tx, workspace_id: str, keys: Iterable[str]) -> dict[str, Event]:
    wanted = list(set(keys))
    if not wanted:
        return {}
    rows = tx.conn.execute(
        select(events).where(
            events.c.workspace_id == workspace_id, events.c.idempotency_key.in_(wanted)
        )
    ).all()
    return {r.idempotency_key: to_event(r) for r in rows}


def visible(viewer_id: str, workspace_id: str) -> ColumnElement[bool]:
    return and_(
        events.c.workspace_id == workspace_id,
        or_(events.c.private_to.is_(None), events.c.private_to == viewer_id),
    )


def seen_expr(marks: Watermarks) -> ColumnElement[Any]:
    return func.coalesce(event_states.c.is_seen, events.c.seq <= marks.seen_seq)


def archived_expr(marks: Watermarks) -> ColumnElement[Any]:
    return func.coalesce(event_states.c.is_archived, events.c.seq <= marks.archived_seq)


# The feed's statements are built once per *shape* (which clauses a query has) with
# named parameters, and kept: building SQLAlchemy's expression trees and their cache
# keys anew for every request cost several times the databases' own work
# (docs/performance.md, "Serving"). Builders decorated with ``@cache`` take shapes
# (booleans, a few names), never values; the values travel in a parameter dict:
#
#   viewer, ws        the viewer's user id and the workspace id
#   s, a              the seen and archived watermarks (``seq``)
#   start, end        the query's range; first, last: its whole-day bounds
#   first_day, last_day   the same as ``event_day_counts.day`` text
#   types, actions    the filters' values (expanding lists)
#   after_created, after_seq, limit, offset, seqs   paging


def _p(name: str, *, expanding: bool = False) -> BindParameter[Any]:
    return bindparam(name, expanding=expanding)


def _may_see() -> ColumnElement[bool]:
    return or_(events.c.private_to.is_(None), events.c.private_to == _p("viewer"))


def _visible() -> ColumnElement[bool]:
    return and_(events.c.workspace_id == _p("ws"), _may_see())


def feed_params(
    viewer_id: str, workspace_id: str, marks: Watermarks, q: ActivityQuery
) -> dict[str, Any]:
    """The parameter values of the feed's statements for this viewer and query."""
    params: dict[str, Any] = {
        "viewer": viewer_id,
        "ws": workspace_id,
        "s": marks.seen_seq,
        "a": marks.archived_seq,
    }
    if q.start is not None:
        params["start"] = q.start
    if q.end is not None:
        params["end"] = q.end
    if q.resource_types:
        params["types"] = [t.value for t in q.resource_types]
    if q.actions:
        params["actions"] = [a.value for a in q.actions]
    return params


def _escape_like(text_: str) -> str:
    return text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


#: Up to this many trigram matches in all workspaces, a search looks its rows up one by
#: one; above, it walks the feed index of the workspace's date range instead.
FTS_PROBE = 2000

_SEARCH_TEXT = events.c.resource_name + " " + events.c.resource_type + " " + events.c.description


#: A search's ``work_mem`` at least (kB): its bitmap of trigram matches stays exact up
#: to about 200,000 heap pages (1.6 GB of events). At PostgreSQL's default of 4 MB it
#: turned lossy at 1,000,000 events (5,000,000 in all), and every row of a lossy page
#: was tested again: 828,561 rows besides the 125,502 candidates of a common word, whose
#: search took 282-290 ms instead of 146-156 (docs/performance.md, "Eleventh round").
SEARCH_WORK_MEM_KB = 16384

#: For a search's statements, in the rest of its transaction: a plan for its pattern,
#: the server's own parallel workers (the feed's session statement turns both off for
#: plain pages: ``states._LIVE_SESSION_FOR_FEED_PG``; a search of a year of common text
#: on two cores took 0.46 s with them and 0.67 s without), and ``work_mem`` raised to
#: ``SEARCH_WORK_MEM_KB`` (never lowered: a server configured above it keeps its own).
_CUSTOM_PLANS = text(
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
    "set_config('max_parallel_workers_per_gather', "
    "(SELECT reset_val FROM pg_settings WHERE name = 'max_parallel_workers_per_gather'), true), "
    "set_config('work_mem', "
    "greatest(pg_size_bytes(current_setting('work_mem')) / 1024, :work_mem)::text, true)"
).bindparams(work_mem=SEARCH_WORK_MEM_KB)


def search_clause(tx: Tx, search: str) -> ColumnElement[bool]:
    """Case-insensitive substring match over name, type and description."""
    return _search(tx, search)[0]


def _search(tx: Tx, search: str) -> tuple[ColumnElement[bool], bool]:
    """The search condition, and whether the database should drive the query from the
    (few) matches rather than from the feed index.

    SQLite answers from the FTS5 trigram table (a phrase of trigrams is a substring);
    PostgreSQL from the pg_trgm GIN index, which serves ILIKE. Below three characters
    no trigram exists, so both fall back to a LIKE over the (date-bounded) rows.
    """
    if "\x00" in search:
        # No stored text holds a NUL (ingestion refuses it), and neither database takes
        # one in a query: nothing matches.
        return false(), False
    pattern = f"%{_escape_like(search)}%"
    if tx.dialect == "postgresql":
        # psycopg prepares a statement run five times on a connection, and PostgreSQL
        # then plans it once for any pattern: that generic plan cannot know how many
        # rows match and fetches them by the trigram bitmap first (4x slower at 1M
        # events). A plan per execution costs a millisecond; a search takes hundreds.
        tx.conn.execute(_CUSTOM_PLANS)
        return _SEARCH_TEXT.ilike(pattern, escape="\\"), False
    if len(search) >= 3:
        phrase = '"' + fold_case(search).replace('"', '""') + '"'
        fts = (
            text("SELECT rowid FROM events_fts WHERE events_fts MATCH :phrase")
            .bindparams(phrase=phrase)
            .columns(column("rowid", Integer()))
        )
        probe = text(
            "SELECT count(*) FROM (SELECT rowid FROM events_fts WHERE events_fts MATCH :phrase "
            "LIMIT :cap)"
        )
        matches = tx.conn.execute(probe, {"phrase": phrase, "cap": FTS_PROBE}).scalar_one()
        if matches < FTS_PROBE:
            # A rare text: fetch its few rows by primary key.
            return events.c.seq.in_(fts.scalar_subquery()), True
        # A common text: its match set, read once into a temporary index, is tested
        # from the feed index's range (``+ 0`` stops SQLite from instead looking up
        # every match, in every workspace and year, by primary key).
        return (events.c.seq + 0).in_(fts.scalar_subquery()), False
    # SQLite's LIKE folds ASCII letters only; spell out, for each character, every one
    # that folds as it does (one or two characters make a handful of patterns): the
    # letters ILIKE and the trigram path match, e.g. 'İ' for 'i' and the Kelvin sign for
    # 'k', but not the dotless i, long s or micro sign, which upper-case to 'I', 'S' and
    # Greek capital mu yet lower-case to themselves.
    cases = [case_variants(c) for c in search]
    patterns = sorted({f"%{_escape_like(''.join(p))}%" for p in product(*cases)})
    return or_(*(_SEARCH_TEXT.like(p, escape="\\") for p in patterns)), False


@cache
def _exception_seqs(*, is_archived: bool, above_a: bool, upto_a: bool) -> Select[Any]:
    """The viewer's archive exceptions saying ``is_archived``, above and/or at or below
    the archive watermark (few rows)."""
    es = event_states.c
    stmt = select(es.event_seq).where(
        es.user_id == _p("viewer"),
        es.workspace_id == _p("ws"),
        es.is_archived == is_archived,
    )
    if above_a:
        stmt = stmt.where(es.event_seq > _p("a"))
    if upto_a:
        stmt = stmt.where(es.event_seq <= _p("a"))
    return stmt


def _archive_clause(*, is_archived: bool, a_zero: bool) -> ColumnElement[bool]:
    """Whether an event is (not) archived for the viewer, without joining ``event_states``.

    The same rule as ``archived_expr`` (exception, else ``seq <= A``), written as the
    watermark test corrected by the viewer's few exceptions, each set an uncorrelated
    subquery the database evaluates once. So a count or an OFFSET scan over the feed
    index reads the index alone: no per-row lookup of the viewer's state. ``a_zero``:
    the viewer never archived in bulk (A = 0).
    """
    a = _p("a")
    seq = events.c.seq

    def exceptions(is_archived: bool, *, above_a: bool) -> Any:
        stmt = _exception_seqs(is_archived=is_archived, above_a=above_a, upto_a=not above_a)
        return stmt.scalar_subquery()

    if is_archived:
        # Archived: at or below A unless restored, or above A and archived one by one.
        in_above = seq.in_(exceptions(True, above_a=True))
        if a_zero:
            return in_above
        return or_(and_(seq <= a, seq.not_in(exceptions(False, above_a=False))), in_above)
    not_archived_above = seq.not_in(exceptions(True, above_a=True))
    if a_zero:
        return not_archived_above
    return or_(and_(seq > a, not_archived_above), seq.in_(exceptions(False, above_a=False)))


def _seqs_of(side: ColumnElement[bool]) -> Select[Any]:
    return select(events.c.seq).where(events.c.workspace_id == _p("ws"), side)


#: Up to this many events on one side of the archive watermark are counted one by one.
SMALL_SIDE = 5000


def _small_side(marks: Watermarks, head_ord: int) -> str | None:
    """Which side of the archive watermark holds few events: "above", "below" or None."""
    if head_ord - marks.archived_ord <= SMALL_SIDE:
        return "above"
    if marks.archived_ord <= SMALL_SIDE:
        return "below"
    return None


def _driver_kind(q: ActivityQuery, marks: Watermarks, head_ord: int) -> str | None:
    """Whether a small set of ``seq`` holds every row of the tab, and which, or None.

    Right after "Archive all" the Inbox is the few events above the watermark A (plus
    restored ones); a viewer who never archived in bulk has an Archive of exceptions
    only. Driving the query from such a set (the arrival index, primary-key look-ups)
    beats walking the whole date range of the feed index to find next to nothing.
    """
    if marks.archived_seq == 0:
        return "archived_exceptions" if q.is_archived else None
    side = _small_side(marks, head_ord)
    if not q.is_archived and side == "above":
        return "inbox_above"
    if q.is_archived and marks.archived_ord <= SMALL_SIDE:
        return "archive_below"
    return None


def _driver(kind: str) -> Any:
    if kind == "archived_exceptions":
        # A = 0 here: every exception archived above it.
        return _exception_seqs(is_archived=True, above_a=True, upto_a=False)
    if kind == "inbox_above":
        return union_all(
            _seqs_of(events.c.seq > _p("a")),
            _exception_seqs(is_archived=False, above_a=False, upto_a=True),
        )
    return union_all(
        _seqs_of(events.c.seq <= _p("a")),
        _exception_seqs(is_archived=True, above_a=True, upto_a=False),
    )


class _Shape(NamedTuple):
    """Which clauses a feed query has (the cache key of its statements)."""

    is_archived: bool
    a_zero: bool
    driver: str | None
    by_match: bool
    has_start: bool
    has_end: bool
    has_types: bool
    has_actions: bool


def _shape(q: ActivityQuery, marks: Watermarks, *, by_match: bool, head_ord: int) -> _Shape:
    return _Shape(
        is_archived=q.is_archived,
        a_zero=marks.archived_seq == 0,
        driver=None if by_match else _driver_kind(q, marks, head_ord),
        by_match=by_match,
        has_start=q.start is not None,
        has_end=q.end is not None,
        has_types=bool(q.resource_types),
        has_actions=bool(q.actions),
    )


def _kinds(shape: Any, table: Any) -> list[ColumnElement[bool]]:
    out = []
    if shape.has_types:
        out.append(table.c.resource_type.in_(_p("types", expanding=True)))
    if shape.has_actions:
        out.append(table.c.action.in_(_p("actions", expanding=True)))
    return out


def _in_range(lo: str | None, hi: str | None) -> list[ColumnElement[bool]]:
    out = []
    if lo is not None:
        out.append(events.c.created_at >= _p(lo))
    if hi is not None:
        out.append(events.c.created_at < _p(hi))
    return out


def _where(shape: _Shape) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if shape.by_match or shape.driver is not None:
        # ``|| ''`` keeps SQLite off the feed index (which it would walk to skip the
        # sort), so it looks up the few matches or candidates by primary key instead.
        conds += [events.c.workspace_id.concat("") == _p("ws"), _may_see()]
        if shape.driver is not None:
            conds.append(events.c.seq.in_(_driver(shape.driver)))
    else:
        conds.append(_visible())
    conds.append(_archive_clause(is_archived=shape.is_archived, a_zero=shape.a_zero))
    conds += _in_range("start" if shape.has_start else None, "end" if shape.has_end else None)
    return conds + _kinds(shape, events)


_ORDER = (events.c.created_at.desc(), events.c.seq.desc())


@cache
def _page_keys(shape: _Shape, *, has_after: bool, has_offset: bool) -> Select[Any]:
    stmt = select(events.c.seq).where(*_where(shape))
    if has_after:
        stmt = stmt.where(
            tuple_(events.c.created_at, events.c.seq)
            < tuple_(
                bindparam("after_created", type_=events.c.created_at.type),
                bindparam("after_seq", type_=Integer()),
            )
        )
    stmt = stmt.order_by(*_ORDER).limit(_p("limit"))
    return stmt.offset(_p("offset")) if has_offset else stmt


@cache
def _count_where(shape: _Shape) -> Select[Any]:
    return select(func.count()).select_from(events).where(*_where(shape))


#: What an event says, as stored, in the order the feed's rows and the export's lines
#: read it: its number, id and workspace, what happened to which resource, who, and how.
DESCRIBED_COLUMNS = (
    events.c.seq,
    events.c.id,
    events.c.workspace_id,
    events.c.resource_type,
    events.c.action,
    events.c.resource_id,
    events.c.resource_name,
    events.c.description,
    events.c.actor_id,
    events.c.actor_name,
    events.c.actor_email,
    events.c.source_kind,
    events.c.source_key_prefix,
)
#: The columns a viewer's row reads, in the order ``_row_event`` unpacks them.
_ROW_COLUMNS = (
    *DESCRIBED_COLUMNS,
    events.c.created_at,
    events.c.recorded_at,
    events.c.metadata,
    events.c.private_to,
    events.c.idempotency_key,
)
_TYPES = {t.value: t for t in ResourceType}
_ACTIONS = {a.value: a for a in Action}


@lru_cache(maxsize=1024)
def _source(kind: str, prefix: str | None) -> Source:
    return Source(kind=SourceKind(kind), api_key_prefix=prefix)


def _row_event(r: Any) -> Event:
    """An ``Event`` from a row that starts with ``_ROW_COLUMNS`` (plain indexing: the
    feed converts 20 of them per request)."""
    actor_id = r[8]
    return Event(
        seq=r[0],
        id=r[1],
        workspace_id=r[2],
        resource_type=_TYPES[r[3]],
        action=_ACTIONS[r[4]],
        resource_id=r[5],
        resource_name=r[6],
        description=r[7],
        actor=Actor(id=actor_id, name=r[9] or "", email=r[10] or "") if actor_id else None,
        source=_source(r[11], r[12]),
        created_at=r[13],
        recorded_at=r[14],
        metadata=r[15] or {},
        private_to=r[16],
        idempotency_key=r[17],
    )


@cache
def _viewer_rows(by: str) -> Select[Any]:
    """Events with the viewer's seen/archived state, by ``seq`` (a page), by ``id``, or
    (``page``) without a condition yet."""
    es = event_states.c
    rs = resources.c
    stmt = select(
        *_ROW_COLUMNS,
        func.coalesce(es.is_seen, events.c.seq <= _p("s")).label("is_seen"),
        func.coalesce(es.is_archived, events.c.seq <= _p("a")).label("is_archived"),
        rs.deleted_at,
        rs.purge_after,
    ).select_from(
        events.outerjoin(
            event_states, and_(es.user_id == _p("viewer"), es.event_seq == events.c.seq)
        )
        # The live state of the row's project, dataset or model, when it is in Trash or
        # deleted (``resources.kind`` spells the event's type): one primary-key look-up
        # per row instead of a statement of its own.
        .outerjoin(
            resources,
            and_(
                rs.id == events.c.resource_id,
                rs.kind == events.c.resource_type,
                rs.workspace_id == events.c.workspace_id,
                or_(rs.trashed_at.is_not(None), rs.deleted_at.is_not(None)),
            ),
        )
    )
    if by == "page":
        return stmt  # ``_page_rows`` adds the keys
    if by == "seq":
        return stmt.where(events.c.seq.in_(_p("seqs", expanding=True))).order_by(*_ORDER)
    # ``|| ''``: SQLite would otherwise seek the workspace in ``ux_events_ord`` and test
    # every one of its events against the ids (0.5 s for 1000 ids in a workspace of a
    # million events) instead of looking each id up in its unique index.
    return stmt.where(
        events.c.workspace_id.concat("") == _p("ws"),
        _may_see(),
        events.c.id.in_(_p("ids", expanding=True)),
    )


@cache
def _page_rows(shape: _Shape, *, has_after: bool, has_offset: bool) -> Select[Any]:
    """``_page_keys`` and ``_viewer_rows`` in one statement: the page's ``seq`` values, still
    from the feed index alone (a subquery with its LIMIT and OFFSET), then those rows
    by primary key."""
    keys = _page_keys(shape, has_after=has_after, has_offset=has_offset).scalar_subquery()
    return _viewer_rows("page").where(events.c.seq.in_(keys)).order_by(*_ORDER)


@dataclass(frozen=True, slots=True)
class Row:
    """One event as a viewer sees it."""

    event: Event
    is_seen: bool
    is_archived: bool
    #: Whether ``resource_state`` was read with the row (else the caller looks it up).
    has_resource_state: bool = False
    #: The state of the event's project, dataset or model, when in Trash or deleted.
    resource_state: ResourceState | None = None


#: Columns of a page's row (``_viewer_rows``): a statement that reads more beside them
#: (``states.select_page_and_counts``) puts its own after these.
ROW_WIDTH = len(_ROW_COLUMNS) + 4


def row_of(r: Sequence[Any]) -> Row:
    """A ``Row`` from a fetched row that starts with ``_viewer_rows``' columns."""
    n = len(_ROW_COLUMNS)
    return Row(
        event=_row_event(r),
        is_seen=bool(r[n]),
        is_archived=bool(r[n + 1]),
        has_resource_state=True,
        resource_state=ResourceState.of(deleted_at=r[n + 2], purge_after=r[n + 3]),
    )


def _rows(tx: Tx, stmt: Select[Any], params: dict[str, Any]) -> list[Row]:
    return [row_of(r) for r in tx.fetch(stmt, params)]


def select_page(
    tx: Tx,
    *,
    viewer_id: str,
    workspace_id: str,
    marks: Watermarks,
    q: ActivityQuery,
    limit: int,
    offset: int = 0,
    after: Cursor | None = None,
    head_ord: int | None = None,
) -> list[Row]:
    """A page of the feed, newest first (``created_at`` desc, then ``seq`` desc).

    Two steps ("deferred join"): the page's ``seq`` values come from the feed index
    alone (the OFFSET rows are skipped there, never fetched), then only those rows are
    read with the viewer's state. ``head_ord``: the workspace's head, if the caller has
    read it already.
    """
    return select_page_with_total(
        tx,
        viewer_id=viewer_id,
        workspace_id=workspace_id,
        marks=marks,
        q=q,
        limit=limit,
        offset=offset,
        after=after,
        head_ord=head_ord,
        with_total=False,
    )[0]


def select_page_with_total(
    tx: Tx,
    *,
    viewer_id: str,
    workspace_id: str,
    marks: Watermarks,
    q: ActivityQuery,
    limit: int,
    offset: int = 0,
    after: Cursor | None = None,
    head_ord: int | None = None,
    with_total: bool = True,
) -> tuple[list[Row], int | None]:
    """``select_page``'s rows and, when the page's own statement can count them too,
    ``count_matching``'s total; else None (the caller counts).

    It can for a search of common text on SQLite without a cursor: the page's keys and
    the count each build the text's match set from the trigram table and test the feed
    index's range against it, hundreds of milliseconds each at 1,000,000 events; the
    keys with ``count(*) OVER ()`` (every match, before LIMIT and OFFSET) build it once
    (docs/performance.md, "Thirteenth round"). A page past the last match has no row to
    carry the count: None."""
    if not q.search:
        if head_ord is None and marks.archived_seq:
            head_ord = select_head(tx, workspace_id)[1]
        page, params = page_statement(
            viewer_id=viewer_id,
            workspace_id=workspace_id,
            marks=marks,
            q=q,
            limit=limit,
            offset=offset,
            after=after,
            head_ord=head_ord or 0,
        )
        return _rows(tx, page, params), None
    params = _page_params(viewer_id, workspace_id, marks, q, limit, offset, after)
    matched, by_match = _search(tx, q.search)
    if head_ord is None and marks.archived_seq and not by_match:
        head_ord = select_head(tx, workspace_id)[1]
    shape = _shape(q, marks, by_match=by_match, head_ord=head_ord or 0)
    keys = _page_keys(shape, has_after=after is not None, has_offset=bool(offset))
    keys = keys.where(matched)
    # A rare text's few matches are looked up by key, and counted as cheaply apart.
    counted = with_total and tx.dialect == "sqlite" and not by_match and after is None
    if counted:
        keys = keys.add_columns(func.count().over())
    found = tx.conn.execute(keys, params).all()
    total = int(found[0][1]) if counted and found else None
    if not found:
        return [], total
    params["seqs"] = [int(r[0]) for r in found]
    return _rows(tx, _viewer_rows("seq"), params), total


def page_statement(
    *,
    viewer_id: str,
    workspace_id: str,
    marks: Watermarks,
    q: ActivityQuery,
    limit: int,
    offset: int,
    after: Cursor | None,
    head_ord: int,
) -> tuple[Select[Any], dict[str, Any]]:
    """``select_page``'s one statement, with its parameters, for a query without a text
    search (which takes steps of its own), for callers that read more beside it: the
    page's keys from the feed index (a subquery with its LIMIT and OFFSET), then those
    rows by primary key, in the columns ``row_of`` reads. Built once per shape."""
    if q.search:
        raise ValueError("a text search has no one page statement (select_page)")
    params = _page_params(viewer_id, workspace_id, marks, q, limit, offset, after)
    shape = _shape(q, marks, by_match=False, head_ord=head_ord)
    return _page_rows(shape, has_after=after is not None, has_offset=bool(offset)), params


def _page_params(
    viewer_id: str,
    workspace_id: str,
    marks: Watermarks,
    q: ActivityQuery,
    limit: int,
    offset: int,
    after: Cursor | None,
) -> dict[str, Any]:
    params = feed_params(viewer_id, workspace_id, marks, q)
    params["limit"] = limit
    if offset:
        params["offset"] = offset
    if after is not None:
        params["after_created"] = after.created_at
        params["after_seq"] = after.seq
    return params


def iter_matching(
    tx: Tx,
    *,
    viewer_id: str,
    workspace_id: str,
    marks: Watermarks,
    q: ActivityQuery,
    chunk: int = 1000,
) -> Iterator[Row]:
    """Every matching event, newest first, fetched in keyset chunks (constant memory)."""
    after: Cursor | None = None
    while True:
        rows = select_page(
            tx,
            viewer_id=viewer_id,
            workspace_id=workspace_id,
            marks=marks,
            q=q,
            limit=chunk,
            after=after,
        )
        yield from rows
        if len(rows) < chunk:
            return
        last = rows[-1].event
        after = Cursor(created_at=last.created_at, seq=last.seq)


def _day_start(moment: datetime, *, up: bool) -> datetime:
    floor = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return floor + timedelta(days=1) if up and floor != moment else floor


class _TotalShape(NamedTuple):
    """Which parts ``_fast_total``'s one statement has (its cache key)."""

    is_archived: bool
    side: str  # "all" (A = 0), or the small side of A: "above" or "below"
    has_start: bool
    has_end: bool
    has_types: bool
    has_actions: bool
    direct_only: bool  # the range lies within one day: count it in the feed index
    has_first: bool  # whole days from ``first_day`` on
    has_last: bool  # whole days before ``last_day``
    edge_start: bool  # the partial day [start, first)
    edge_end: bool  # the partial day [last, end)
    # Each partial day counted on its shorter side: the day's total less the events of
    # [start_floor, start), or of [end, after_last), when that is the shorter walk.
    start_by_day: bool
    end_by_day: bool


def _count_visible_in(shape: _TotalShape) -> ColumnElement[Any]:
    """The viewer's visible events created in [start, end), as one SQL expression.

    Whole UTC days come from ``event_day_counts`` (a row per day, owner, type and
    action) or, unfiltered, ``event_day_totals`` (a row per day and owner); only the
    partial days at the two edges are counted in the feed index, each on its shorter
    side: [start, first) directly, or as the start's whole day less [start_floor,
    start) when the start lies in the first half of its day (the default range starts
    at this moment of the day 30 days ago, so a page early in the UTC day walked most
    of a day of events: 2,174 index entries, 0.4 ms of PostgreSQL at 1,000,000 events).
    """

    def direct(lo: str | None, hi: str | None) -> ColumnElement[Any]:
        return (
            select(func.count())
            .select_from(events)
            .where(_visible(), *_in_range(lo, hi), *_kinds(shape, events))
            .scalar_subquery()
        )

    if shape.direct_only:
        return direct("start", "end" if shape.has_end else None)
    # Without a type or action filter, the day's totals: a row or two a day, where the
    # counts by type and action hold about forty.
    counts = event_day_counts if shape.has_types or shape.has_actions else event_day_totals
    dc = counts.c
    any_days = select(func.coalesce(func.sum(dc.n), 0)).where(
        dc.workspace_id == _p("ws"),
        dc.private_to.in_([literal(""), _p("viewer")]),
        *_kinds(shape, counts),
    )
    days = any_days
    if shape.has_first:
        days = days.where(dc.day >= _p("first_day"))
    if shape.has_last:
        days = days.where(dc.day < _p("last_day"))
    total: ColumnElement[Any] = days.scalar_subquery()

    def day(name: str) -> ColumnElement[Any]:
        return any_days.where(dc.day == _p(name)).scalar_subquery()

    if shape.edge_start:
        if shape.start_by_day:
            total = total + day("start_day") - direct("start_floor", "start")
        else:
            total = total + direct("start", "first")
    if shape.edge_end:
        if shape.end_by_day:
            total = total + day("last_day") - direct("end", "after_last")
        else:
            total = total + direct("last", "end")
    return total


@cache
def _total_statement(shape: _TotalShape) -> Select[Any]:
    in_range = [
        *_in_range("start" if shape.has_start else None, "end" if shape.has_end else None),
        *_kinds(shape, events),
    ]
    all_in = _count_visible_in(shape)

    def one_side(side: ColumnElement[bool]) -> ColumnElement[Any]:
        # Driven from the arrival index (``seq IN``), not by walking the range.
        return (
            select(func.count())
            .select_from(events)
            .where(events.c.seq.in_(_seqs_of(side)), _may_see(), *in_range)
            .scalar_subquery()
        )

    a = _p("a")
    if shape.side == "all":
        above: ColumnElement[Any] = all_in
    elif shape.side == "above":
        above = one_side(events.c.seq > a)
    else:
        above = all_in - one_side(events.c.seq <= a)

    def exceptions(is_archived: bool, side: ColumnElement[bool]) -> ColumnElement[Any]:
        # Driven from the viewer's few exceptions, each event looked up by its key in a
        # correlated subquery. As a join, a planner without statistics (autovacuum off)
        # took the workspace's events for few and walked all of them per exception:
        # 534 ms instead of 3 (docs/reliability.md, the fifth-round soak).
        es = event_states.c
        in_filters = (
            select(literal(1))
            .where(events.c.seq == es.event_seq, _visible(), *in_range)
            .correlate(event_states)
            .scalar_subquery()
        )
        return (
            select(func.count())
            .select_from(event_states)
            .where(
                es.user_id == _p("viewer"),
                es.workspace_id == _p("ws"),
                es.is_archived == is_archived,
                side,
                in_filters.is_not(None),
            )
            .scalar_subquery()
        )

    inbox = (
        above
        - exceptions(True, event_states.c.event_seq > a)
        + exceptions(False, event_states.c.event_seq <= a)
    )
    return select(inbox if not shape.is_archived else all_in - inbox)


def _fast_total(
    tx: Tx, params: dict[str, Any], *, marks: Watermarks, q: ActivityQuery, head_ord: int
) -> int | None:
    """``total`` without walking the date range, or None when the filters need the walk.

    visible(range) comes from whole-day counts; the Inbox part is the events above the
    archive watermark A (counted directly on whichever side of A is small), less the
    exceptions archived above A, plus those restored at or below A, that lie in range.
    """
    stmt = _fast_total_statement(params, marks=marks, q=q, head_ord=head_ord)
    return None if stmt is None else int(tx.conn.execute(stmt, params).scalar_one())


def total_statement(
    *, viewer_id: str, workspace_id: str, marks: Watermarks, q: ActivityQuery, head_ord: int
) -> tuple[Select[Any], dict[str, Any]] | None:
    """The one statement that counts ``count_matching``'s total (its first column), with
    its parameters, for callers that count more beside it; None when the query needs
    ``count_matching`` itself (a text search, or a large Inbox on both sides of A).
    The statement is built once per shape: callers may key their own caches on it."""
    params = feed_params(viewer_id, workspace_id, marks, q)
    stmt = _fast_total_statement(params, marks=marks, q=q, head_ord=head_ord)
    return None if stmt is None else (stmt, params)


def _fast_total_statement(
    params: dict[str, Any], *, marks: Watermarks, q: ActivityQuery, head_ord: int
) -> Select[Any] | None:
    """``_fast_total``'s statement (its day-bound parameters added to ``params``)."""
    if q.search:
        return None
    side = "all" if marks.archived_seq == 0 else _small_side(marks, head_ord)
    if side is None:
        return None
    start, end = q.start, q.end
    # No midnight follows a start on 9999-12-31, the last day ``datetime`` holds, so no
    # whole day lies in the range: it is counted in the feed index alone.
    on_last_day = start is not None and start.date() == date.max
    first = _day_start(start, up=True) if start is not None and not on_last_day else None
    last = _day_start(end, up=False) if end is not None else None
    direct_only = on_last_day or (first is not None and last is not None and first >= last)
    if first is not None:
        params["first"] = first
        params["first_day"] = first.strftime("%Y-%m-%d")
    if last is not None:
        params["last"] = last
        params["last_day"] = last.strftime("%Y-%m-%d")
    edge_start = start is not None and first != start
    edge_end = end is not None and last != end
    # The partial days' shorter sides (``_count_visible_in``).
    start_by_day = edge_start and not direct_only and start is not None and start.hour < 12
    end_by_day = (
        edge_end
        and not direct_only
        and end is not None
        and last is not None
        and end.hour >= 12
        # No day follows 9999-12-31.
        and last.date() < date.max
    )
    if start_by_day:
        assert start is not None
        floor = _day_start(start, up=False)
        params["start_floor"] = floor
        params["start_day"] = floor.strftime("%Y-%m-%d")
    if end_by_day:
        assert last is not None
        params["after_last"] = last + timedelta(days=1)
    shape = _TotalShape(
        is_archived=q.is_archived,
        side=side,
        has_start=start is not None,
        has_end=end is not None,
        has_types=bool(q.resource_types),
        has_actions=bool(q.actions),
        direct_only=direct_only,
        has_first=first is not None,
        has_last=last is not None,
        edge_start=edge_start,
        edge_end=edge_end,
        start_by_day=start_by_day,
        end_by_day=end_by_day,
    )
    return _total_statement(shape)


def count_matching(
    tx: Tx,
    *,
    viewer_id: str,
    workspace_id: str,
    marks: Watermarks,
    q: ActivityQuery,
    head_ord: int | None = None,
) -> int:
    """How many events match, exactly. Without a text search, from whole-day
    counts (``_fast_total``); otherwise over the feed index alone where the filters allow
    it (see ``_archive_clause``). ``head_ord``: the workspace's head, if already read."""
    params = feed_params(viewer_id, workspace_id, marks, q)
    if head_ord is None and marks.archived_seq:
        head_ord = select_head(tx, workspace_id)[1]
    fast = _fast_total(tx, params, marks=marks, q=q, head_ord=head_ord or 0)
    if fast is not None:
        return fast
    matched, by_match = _search(tx, q.search) if q.search else (None, False)
    stmt = _count_where(_shape(q, marks, by_match=by_match, head_ord=head_ord or 0))
    if matched is not None:
        stmt = stmt.where(matched)
    return int(tx.conn.execute(stmt, params).scalar_one())


def select_visible_seqs(
    tx: Tx, *, viewer_id: str, workspace_id: str, ids: Sequence[str], marks: Watermarks
) -> list[Row]:
    """The visible events among ``ids`` with the viewer's state; foreign ids drop out."""
    if not ids:
        return []
    params = {
        "viewer": viewer_id,
        "ws": workspace_id,
        "s": marks.seen_seq,
        "a": marks.archived_seq,
        "ids": list(set(ids)),
    }
    return _rows(tx, _viewer_rows("id"), params)


def select_event(
    tx: Tx,
    *,
    viewer_id: str,
    workspace_id: str | None,
    event_id: str,
) -> Event | None:
    """One event the viewer may see (in ``workspace_id`` when given), else None."""
    stmt = select(events).where(events.c.id == event_id)
    if workspace_id is not None:
        stmt = stmt.where(events.c.workspace_id == workspace_id)
    stmt = stmt.where(or_(events.c.private_to.is_(None), events.c.private_to == viewer_id))
    row = tx.conn.execute(stmt).first()
    return to_event(row) if row else None


#: Other members' private events in the workspace: what the viewer cannot see.
PRIVATE_OF_OTHERS = (
    select(func.count())
    .select_from(events)
    .where(
        events.c.workspace_id == _p("ws"),
        events.c.private_to.is_not(None),
        events.c.private_to != _p("viewer"),
    )
)
PRIVATE_OF_OTHERS_ABOVE = PRIVATE_OF_OTHERS.where(events.c.seq > _p("seq"))


def count_private_of_others_above(tx: Tx, *, viewer_id: str, workspace_id: str, seq: int) -> int:
    """Other users' private events above ``seq``: the part of a range this viewer can't see."""
    params = {"ws": workspace_id, "viewer": viewer_id, "seq": seq}
    return int(tx.conn.execute(PRIVATE_OF_OTHERS_ABOVE, params).scalar_one())
