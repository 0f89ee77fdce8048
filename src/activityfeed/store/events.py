"""Events: insertion, the newest-first feed, search and arrival-order counts.

Every query here is scoped by ``workspace_id`` and by the viewer's visibility
(``private_to IS NULL OR private_to = viewer``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import product
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
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
    ResourceType,
    Source,
    SourceKind,
)
from activityfeed.domain.query import ActivityQuery, Cursor
from activityfeed.domain.state import Watermarks
from activityfeed.store import chain as chain_store
from activityfeed.store.db import Tx
from activityfeed.store.schema import event_day_counts, event_states, events

_EVENT_COLUMNS = [c for c in events.c if c.name not in ("payload_hash",)]


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


def select_head(tx: Tx, workspace_id: str) -> tuple[int, int]:
    """The newest event's (seq, ws_ord) in the workspace, or (0, 0) when it has none."""
    row = tx.conn.execute(
        select(events.c.seq, events.c.ws_ord)
        .where(events.c.workspace_id == workspace_id)
        .order_by(newest_first_in_workspace())
        .limit(1)
    ).first()
    return (int(row.seq), int(row.ws_ord)) if row else (0, 0)


def insert_events(tx: Tx, workspace_id: str, new: Sequence[NewEvent]) -> list[Event]:
    """Insert events of one workspace, in order, numbering them after the current head.

    The caller holds the workspace's write lock (``lock_workspace(exclusive=True)``) so
    that ``ws_ord`` stays dense and follows ``seq``. A batch costs a constant number of
    statements whatever its size: the head, the ``seq`` values, one bulk insert (``COPY``
    on PostgreSQL, one ``executemany`` on SQLite) and, on SQLite, the statements of
    ``index_batch``, and the batch's hash-chain checkpoint
    (``store.chain``). Raises ``ValueError`` for a naive ``created_at``/``recorded_at``.
    """
    if not new:
        return []
    # The head and the chain's newest digest in one statement (tamper evidence).
    head = chain_store.select_head(tx, workspace_id)
    head_ord = head.ws_ord
    seqs = _allocate_seqs(tx, len(new))
    is_pg = tx.dialect == "postgresql"
    # PostgreSQL takes aware datetimes as they are; SQLite stores fixed-width naive UTC
    # text (see ``schema.UTCDateTime``), converted here once per distinct value.
    stamp = _checked_utc if is_pg else _sqlite_time
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
    """The JSON text a metadata column stores (what SQLAlchemy's JSON type would bind,
    without the spaces)."""
    return json.dumps(value, separators=(",", ":"))


def _checked_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; give a UTC-aware one")
    return value


def _sqlite_time(value: datetime) -> str:
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
FTS_BATCH_SQL = (
    "INSERT INTO events_fts(rowid, body) "
    "SELECT seq, resource_name || ' ' || resource_type || ' ' || description "
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


def _state_join(viewer_id: str) -> Any:
    return events.outerjoin(
        event_states,
        and_(event_states.c.user_id == viewer_id, event_states.c.event_seq == events.c.seq),
    )


def seen_expr(marks: Watermarks) -> ColumnElement[Any]:
    return func.coalesce(event_states.c.is_seen, events.c.seq <= marks.seen_seq)


def archived_expr(marks: Watermarks) -> ColumnElement[Any]:
    return func.coalesce(event_states.c.is_archived, events.c.seq <= marks.archived_seq)


def _escape_like(text_: str) -> str:
    return text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


#: Up to this many trigram matches in all workspaces, a search looks its rows up one by
#: one; above, it walks the feed index of the workspace's date range instead.
FTS_PROBE = 2000

_SEARCH_TEXT = events.c.resource_name + " " + events.c.resource_type + " " + events.c.description


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
        return _SEARCH_TEXT.ilike(pattern, escape="\\"), False
    if len(search) >= 3:
        phrase = '"' + search.replace('"', '""') + '"'
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
    # SQLite's LIKE folds ASCII letters only; spell out the other letters' cases (one or
    # two characters make a handful of patterns).
    cases = [sorted({v for v in (c, c.lower(), c.upper()) if len(v) == 1}) for c in search]
    patterns = sorted({f"%{_escape_like(''.join(p))}%" for p in product(*cases)})
    return or_(*(_SEARCH_TEXT.like(p, escape="\\") for p in patterns)), False


def _exception_seqs(
    viewer_id: str, workspace_id: str, *, is_archived: bool, above: int | None, upto: int | None
) -> Select[Any]:
    """The viewer's archive exceptions saying ``is_archived``, in a ``seq`` range (few rows)."""
    es = event_states.c
    stmt = select(es.event_seq).where(
        es.user_id == viewer_id,
        es.workspace_id == workspace_id,
        es.is_archived == is_archived,
    )
    if above is not None:
        stmt = stmt.where(es.event_seq > above)
    if upto is not None:
        stmt = stmt.where(es.event_seq <= upto)
    return stmt


def archive_clause(
    viewer_id: str, workspace_id: str, marks: Watermarks, *, is_archived: bool
) -> ColumnElement[bool]:
    """Whether an event is (not) archived for the viewer, without joining ``event_states``.

    The same rule as ``archived_expr`` (exception, else ``seq <= A``), written as the
    watermark test corrected by the viewer's few exceptions, each set an uncorrelated
    subquery the database evaluates once. So a count or an OFFSET scan over the feed
    index reads the index alone: no per-row lookup of the viewer's state.
    """
    a = marks.archived_seq
    seq = events.c.seq
    if is_archived:
        # Archived: at or below A unless restored, or above A and archived one by one.
        below = _exception_seqs(viewer_id, workspace_id, is_archived=False, above=None, upto=a)
        above_ = _exception_seqs(viewer_id, workspace_id, is_archived=True, above=a, upto=None)
        in_above = seq.in_(above_.scalar_subquery())
        if a == 0:
            return in_above
        return or_(and_(seq <= a, seq.not_in(below.scalar_subquery())), in_above)
    archived_above = _exception_seqs(viewer_id, workspace_id, is_archived=True, above=a, upto=None)
    not_archived_above = seq.not_in(archived_above.scalar_subquery())
    if a == 0:
        return not_archived_above
    restored = _exception_seqs(viewer_id, workspace_id, is_archived=False, above=None, upto=a)
    return or_(and_(seq > a, not_archived_above), seq.in_(restored.scalar_subquery()))


def _seqs_of(workspace_id: str, side: ColumnElement[bool]) -> Select[Any]:
    return select(events.c.seq).where(events.c.workspace_id == workspace_id, side)


def _few_candidates(
    tx: Tx, viewer_id: str, workspace_id: str, marks: Watermarks, q: ActivityQuery
) -> Any:
    """A small set of ``seq`` that holds every row of the tab, or None when it would be large.

    Right after "Archive all" the Inbox is the few events above the watermark A (plus
    restored ones); a viewer who never archived in bulk has an Archive of exceptions
    only. Driving the query from such a set (the arrival index, primary-key look-ups)
    beats walking the whole date range of the feed index to find next to nothing.
    """
    a = marks.archived_seq
    if q.is_archived and a == 0:
        return _exception_seqs(viewer_id, workspace_id, is_archived=True, above=0, upto=None)
    if a == 0:
        return None
    _, head_ord = select_head(tx, workspace_id)
    if not q.is_archived and head_ord - marks.archived_ord <= SMALL_SIDE:
        return union_all(
            _seqs_of(workspace_id, events.c.seq > a),
            _exception_seqs(viewer_id, workspace_id, is_archived=False, above=None, upto=a),
        )
    if q.is_archived and marks.archived_ord <= SMALL_SIDE:
        return union_all(
            _seqs_of(workspace_id, events.c.seq <= a),
            _exception_seqs(viewer_id, workspace_id, is_archived=True, above=a, upto=None),
        )
    return None


def _filtered(
    tx: Tx,
    stmt: Select[Any],
    q: ActivityQuery,
    *,
    viewer_id: str,
    workspace_id: str,
    marks: Watermarks,
) -> Select[Any]:
    matched, by_match = _search(tx, q.search) if q.search else (None, False)
    driver = None if by_match else _few_candidates(tx, viewer_id, workspace_id, marks, q)
    if by_match or driver is not None:
        # ``|| ''`` keeps SQLite off the feed index (which it would walk to skip the
        # sort), so it looks up the few matches or candidates by primary key instead.
        stmt = stmt.where(
            events.c.workspace_id.concat("") == workspace_id,
            or_(events.c.private_to.is_(None), events.c.private_to == viewer_id),
        )
        if driver is not None:
            stmt = stmt.where(events.c.seq.in_(driver))
    else:
        stmt = stmt.where(visible(viewer_id, workspace_id))
    stmt = stmt.where(archive_clause(viewer_id, workspace_id, marks, is_archived=q.is_archived))
    if q.start is not None:
        stmt = stmt.where(events.c.created_at >= q.start)
    if q.end is not None:
        stmt = stmt.where(events.c.created_at < q.end)
    if q.resource_types:
        stmt = stmt.where(events.c.resource_type.in_([t.value for t in q.resource_types]))
    if q.actions:
        stmt = stmt.where(events.c.action.in_([a.value for a in q.actions]))
    if matched is not None:
        stmt = stmt.where(matched)
    return stmt


@dataclass(frozen=True, slots=True)
class Row:
    """One event as a viewer sees it."""

    event: Event
    is_seen: bool
    is_archived: bool


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
) -> list[Row]:
    """A page of the feed, newest first (``created_at`` desc, then ``seq`` desc).

    Two steps ("deferred join"): the page's ``seq`` values come from the feed index
    alone (the OFFSET rows are skipped there, never fetched), then only those rows are
    read with the viewer's state.
    """
    order = (events.c.created_at.desc(), events.c.seq.desc())
    keys: Select[Any] = _filtered(
        tx,
        select(events.c.seq),
        q,
        viewer_id=viewer_id,
        workspace_id=workspace_id,
        marks=marks,
    )
    if after is not None:
        keys = keys.where(
            tuple_(events.c.created_at, events.c.seq)
            < tuple_(literal(after.created_at, events.c.created_at.type), literal(after.seq))
        )
    keys = keys.order_by(*order).limit(limit)
    if offset:
        keys = keys.offset(offset)
    page_seqs = [int(s) for s in tx.conn.execute(keys).scalars()]
    if not page_seqs:
        return []
    stmt: Select[Any] = (
        select(
            *_EVENT_COLUMNS,
            seen_expr(marks).label("is_seen_v"),
            archived_expr(marks).label("is_archived_v"),
        )
        .select_from(_state_join(viewer_id))
        .where(events.c.seq.in_(page_seqs))
        .order_by(*order)
    )
    return [
        Row(event=to_event(r), is_seen=bool(r.is_seen_v), is_archived=bool(r.is_archived_v))
        for r in tx.conn.execute(stmt)
    ]


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


#: Up to this many events on one side of the archive watermark are counted one by one.
SMALL_SIDE = 5000


def _day_start(moment: datetime, *, up: bool) -> datetime:
    floor = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return floor + timedelta(days=1) if up and floor != moment else floor


def _in_range(lo: datetime | None, hi: datetime | None) -> list[ColumnElement[bool]]:
    out = []
    if lo is not None:
        out.append(events.c.created_at >= lo)
    if hi is not None:
        out.append(events.c.created_at < hi)
    return out


def _kinds(q: ActivityQuery, table: Any) -> list[ColumnElement[bool]]:
    out = []
    if q.resource_types:
        out.append(table.c.resource_type.in_([t.value for t in q.resource_types]))
    if q.actions:
        out.append(table.c.action.in_([a.value for a in q.actions]))
    return out


def _count_visible_in(viewer_id: str, workspace_id: str, q: ActivityQuery) -> ColumnElement[Any]:
    """The viewer's visible events created in [start, end), as one SQL expression.

    Whole UTC days come from ``event_day_counts`` (a row per day, owner, type and
    action); only the partial days at the two edges are counted in the feed index.
    """
    start, end = q.start, q.end

    def direct(lo: datetime | None, hi: datetime | None) -> ColumnElement[Any]:
        return (
            select(func.count())
            .select_from(events)
            .where(visible(viewer_id, workspace_id), *_in_range(lo, hi), *_kinds(q, events))
            .scalar_subquery()
        )

    first = _day_start(start, up=True) if start is not None else None
    last = _day_start(end, up=False) if end is not None else None
    if first is not None and last is not None and first >= last:
        return direct(start, end)
    dc = event_day_counts.c
    days = select(func.coalesce(func.sum(dc.n), 0)).where(
        dc.workspace_id == workspace_id,
        dc.private_to.in_(["", viewer_id]),
        *_kinds(q, event_day_counts),
    )
    if first is not None:
        days = days.where(dc.day >= first.strftime("%Y-%m-%d"))
    if last is not None:
        days = days.where(dc.day < last.strftime("%Y-%m-%d"))
    total: ColumnElement[Any] = days.scalar_subquery()
    if start is not None and first is not None and first != start:
        total = total + direct(start, first)
    if end is not None and last is not None and last != end:
        total = total + direct(last, end)
    return total


def _fast_total(
    tx: Tx, *, viewer_id: str, workspace_id: str, marks: Watermarks, q: ActivityQuery
) -> int | None:
    """``total`` without walking the date range, or None when the filters need the walk.

    visible(range) comes from whole-day counts; the Inbox part is the events above the
    archive watermark A (counted directly on whichever side of A is small), less the
    exceptions archived above A, plus those restored at or below A, that lie in range.
    """
    if q.search:
        return None
    a = marks.archived_seq
    in_range = [*_in_range(q.start, q.end), *_kinds(q, events)]
    vis = visible(viewer_id, workspace_id)
    all_in = _count_visible_in(viewer_id, workspace_id, q)
    if a == 0:
        above: ColumnElement[Any] = all_in
    else:
        _, head_ord = select_head(tx, workspace_id)
        if head_ord - marks.archived_ord <= SMALL_SIDE:
            # Driven from the arrival index (``seq IN``), not by walking the range.
            above = (
                select(func.count())
                .select_from(events)
                .where(
                    events.c.seq.in_(_seqs_of(workspace_id, events.c.seq > a)),
                    or_(events.c.private_to.is_(None), events.c.private_to == viewer_id),
                    *in_range,
                )
                .scalar_subquery()
            )
        elif marks.archived_ord <= SMALL_SIDE:
            below = (
                select(func.count())
                .select_from(events)
                .where(
                    events.c.seq.in_(_seqs_of(workspace_id, events.c.seq <= a)),
                    or_(events.c.private_to.is_(None), events.c.private_to == viewer_id),
                    *in_range,
                )
                .scalar_subquery()
            )
            above = all_in - below
        else:
            return None

    def exceptions(is_archived: bool, side: ColumnElement[bool]) -> ColumnElement[Any]:
        es = event_states.c
        return (
            select(func.count())
            .select_from(event_states.join(events, events.c.seq == es.event_seq))
            .where(
                es.user_id == viewer_id,
                es.workspace_id == workspace_id,
                es.is_archived == is_archived,
                side,
                vis,
                *in_range,
            )
            .scalar_subquery()
        )

    inbox = (
        above
        - exceptions(True, event_states.c.event_seq > a)
        + exceptions(False, event_states.c.event_seq <= a)
    )
    value = inbox if not q.is_archived else all_in - inbox
    return int(tx.conn.execute(select(value)).scalar_one())


def count_matching(
    tx: Tx, *, viewer_id: str, workspace_id: str, marks: Watermarks, q: ActivityQuery
) -> int:
    """How many events match, exactly. Without a text search, from whole-day
    counts (``_fast_total``); otherwise over the feed index alone where the filters allow
    it (see ``archive_clause``)."""
    fast = _fast_total(tx, viewer_id=viewer_id, workspace_id=workspace_id, marks=marks, q=q)
    if fast is not None:
        return fast
    stmt = _filtered(
        tx,
        select(func.count()).select_from(events),
        q,
        viewer_id=viewer_id,
        workspace_id=workspace_id,
        marks=marks,
    )
    return int(tx.conn.execute(stmt).scalar_one())


def select_visible_seqs(
    tx: Tx, *, viewer_id: str, workspace_id: str, ids: Sequence[str], marks: Watermarks
) -> list[Row]:
    """The visible events among ``ids`` with the viewer's state; foreign ids drop out."""
    if not ids:
        return []
    stmt = (
        select(
            *_EVENT_COLUMNS,
            seen_expr(marks).label("is_seen_v"),
            archived_expr(marks).label("is_archived_v"),
        )
        .select_from(_state_join(viewer_id))
        .where(visible(viewer_id, workspace_id), events.c.id.in_(list(set(ids))))
    )
    return [
        Row(event=to_event(r), is_seen=bool(r.is_seen_v), is_archived=bool(r.is_archived_v))
        for r in tx.conn.execute(stmt)
    ]


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


def count_private_of_others_above(tx: Tx, *, viewer_id: str, workspace_id: str, seq: int) -> int:
    """Other users' private events above ``seq``: the part of a range this viewer can't see."""
    return int(
        tx.conn.execute(
            select(func.count())
            .select_from(events)
            .where(
                events.c.workspace_id == workspace_id,
                events.c.private_to.is_not(None),
                events.c.private_to != viewer_id,
                events.c.seq > seq,
            )
        ).scalar_one()
    )
