"""Engines and transactions.

The caller (a web request, a CLI command) owns the transaction: ``Database.write()`` and
``Database.read()`` open one, and everything inside runs on the yielded ``Tx``. Work
that must wait for the commit (live fan-out) is queued with ``Tx.after_commit``.

SQLite runs in WAL mode with foreign keys on and a busy timeout; write transactions
start with ``BEGIN IMMEDIATE`` so that two writers queue on the lock instead of failing
half-way with "database is locked".
"""

from __future__ import annotations

import logging
import re
import select
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import Select

from activityfeed.domain.query import fold_case

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
T = TypeVar("T")


@dataclass(slots=True)
class Tx:
    """One transaction: the connection to run statements on, and post-commit work."""

    conn: Connection
    is_write: bool
    _after_commit: list[Callable[[], None]] = field(default_factory=list)

    @property
    def dialect(self) -> str:
        return self.conn.dialect.name

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the transaction has committed; never if it rolls back."""
        self._after_commit.append(fn)

    def fetch(self, stmt: Select[Any], params: Mapping[str, Any]) -> list[Any]:
        """Every row of ``stmt``, each a tuple that also names its columns, as
        SQLAlchemy's rows do. For the feed page's statements, which are built once, kept
        and run on every request: they run on the driver's own cursor with their SQL
        compiled once, since SQLAlchemy's execution and result layers cost the app more
        CPU than the driver itself (a third of a page's; docs/performance.md, "Ninth
        round"). Values convert as through SQLAlchemy (the bind and result processors
        of the statement's types); a dropped connection goes through SQLAlchemy, which
        invalidates it, so ``Database.read_retrying`` reads again. Through SQLAlchemy
        instead: a statement whose SQL depends on its values (an expanding IN) or whose
        values need more than a processor, and any statement outside a transaction or
        while someone watches statements (cursor listeners: tests, tracers; SQL
        logging)."""
        conn = self.conn
        dispatch = conn.dispatch
        watched = (
            dispatch.before_cursor_execute
            or dispatch.after_cursor_execute
            or conn.engine.echo
            or _SQL_LOG.isEnabledFor(logging.INFO)
        )
        compiled = None if watched or not conn.in_transaction() else _compiled(conn, stmt)
        if compiled is None:
            return list(conn.execute(stmt, params))
        return compiled.run(conn, stmt, params)


#: SQLAlchemy's statement log (``echo``'s logger): statements it would log run through it.
_SQL_LOG = logging.getLogger("sqlalchemy.engine.Engine")


class _Compiled:
    """A statement compiled for one dialect, with its types' conversions, ready to run
    on the driver's cursor. Built only for statements that need nothing else at each
    execution (``_compiled`` checks)."""

    __slots__ = ("binds", "cursor", "defaults", "order", "query", "results", "row", "sql")

    def __init__(self, dialect: Dialect, stmt: Select[Any]) -> None:
        compiled = stmt.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string or compiled.escaped_bind_names:
            raise _NeedsSQLAlchemy("its SQL depends on its values, or names are escaped")
        if any(bind.callable is not None for bind in compiled.binds.values()):
            raise _NeedsSQLAlchemy("a value computed at execution")
        self.sql = compiled.string
        # The parameters' order for a positional driver (SQLite's "?"); None: by name.
        self.order = tuple(compiled.positiontup) if compiled.positiontup else None
        # What the driver's cursor runs, and the cursor to run it on.
        self.query: str | bytes = self.sql
        self.cursor: Callable[[Any], Any] = lambda driver_conn: driver_conn.cursor()
        if dialect.name == "postgresql" and dialect.driver == "psycopg" and self.order is None:
            self.query, self.order = _numbered(self.sql)
            self.cursor = _raw_cursor()
        self.defaults = {
            name: bind.value for name, bind in compiled.binds.items() if not bind.required
        }
        self.binds = {
            name: proc
            for name, bind in compiled.binds.items()
            if (proc := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        # Result processors that need the driver's column type (it is only known from a
        # cursor) raise here: such a statement runs through SQLAlchemy.
        self.results = tuple(
            (i, proc)
            for i, column in enumerate(stmt.selected_columns)
            if (proc := column.type.dialect_impl(dialect).result_processor(dialect, None))
            is not None
        )
        # Named as SQLAlchemy names a row's columns when each has a name of its own (a
        # column, a label); an unlabelled expression's name differs (``_0``, ``_1``…
        # here): such columns are read by position.
        self.row: Any = namedtuple("Row", list(stmt.selected_columns.keys()), rename=True)  # type: ignore[misc]

    def run(self, conn: Connection, stmt: Select[Any], params: Mapping[str, Any]) -> list[Any]:
        args = {**self.defaults, **params}
        try:
            for name, proc in self.binds.items():
                args[name] = proc(args[name])
        except (KeyError, TypeError, ValueError) as err:
            # A value missing or of the wrong kind: SQLAlchemy's own error says which.
            raise exc.StatementError(str(err), self.sql, params, err) from err
        dbapi_conn = conn.connection.dbapi_connection
        cur = self.cursor(conn.connection.driver_connection)
        try:
            cur.execute(self.query, args if self.order is None else [args[n] for n in self.order])
            fetched = cur.fetchall()
        except conn.dialect.loaded_dbapi.Error as err:
            if not conn.dialect.is_disconnect(err, dbapi_conn, cur):
                raise exc.DBAPIError.instance(
                    self.sql,
                    args,
                    err,
                    conn.dialect.loaded_dbapi.Error,
                    hide_parameters=conn.engine.hide_parameters,
                    dialect=conn.dialect,
                ) from err
            # Through SQLAlchemy, which meets the same dead connection: it invalidates
            # it, tells its listeners (``handle_error``) and raises the error that
            # ``Database.read_retrying`` reads again after.
            return list(conn.execute(stmt, params))
        except BaseException as err:
            if isinstance(err, Exception):
                raise
            # Interrupted mid-statement (a cancelled task, KeyboardInterrupt): what the
            # connection holds is unknown, so it must not go back to the pool (as
            # SQLAlchemy does).
            conn.invalidate()
            raise
        finally:
            cur.close()
        make = self.row._make
        if not self.results:
            return [make(r) for r in fetched]
        out = []
        for r in fetched:
            values = list(r)
            for i, proc in self.results:
                values[i] = proc(values[i])
            out.append(make(values))
        return out


#: A placeholder as SQLAlchemy writes it for psycopg (``%(name)s``), or an escaped ``%``.
_PYFORMAT = re.compile(r"%%|%\(([^)]+)\)s")


def _numbered(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """``sql`` with PostgreSQL's own placeholders (``$1``…; a name used again takes its
    number again, as psycopg numbers them), and the names in their numbers' order.

    psycopg turns ``%(name)s`` into ``$n`` at every execution, remembering the result
    only for statements of up to 4,096 bytes; a feed page with its counts is longer, and
    re-reading it cost a worker 7% of its CPU. Numbered once here, the statement runs
    on psycopg's raw cursor, which sends it as it is."""
    names: dict[str, int] = {}

    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        return f"${names.setdefault(name, len(names) + 1)}"

    return _PYFORMAT.sub(placeholder, sql).encode(), tuple(names)


def _raw_cursor() -> Callable[[Any], Any]:
    import psycopg  # only on PostgreSQL (psycopg is not imported on SQLite)

    return psycopg.RawCursor


class _NeedsSQLAlchemy(Exception):
    """The statement needs SQLAlchemy's execution at every run."""


#: (dialect, statement) → the compiled statement, or None when it runs through
#: SQLAlchemy. Keyed by the dialect object, not its name: another engine of the same
#: database may use another driver. Holding the statement keeps its id from reuse.
_COMPILED: dict[tuple[int, int], tuple[Dialect, Select[Any], _Compiled | None]] = {}
#: At most this many statements: the feed's shapes are several hundred per dialect; a
#: caller that built a statement per call would otherwise grow the cache without end.
_COMPILED_MAX = 4096


def _compiled(conn: Connection, stmt: Select[Any]) -> _Compiled | None:
    """``stmt`` compiled for ``conn``'s dialect, once (statements on this path are built
    once and kept: see ``Tx.fetch``); None when it must run through SQLAlchemy."""
    dialect = conn.dialect
    key = (id(dialect), id(stmt))
    found = _COMPILED.get(key)
    if found is not None:
        return found[2]
    if len(_COMPILED) >= _COMPILED_MAX:
        if not _COMPILED_FULL:
            _COMPILED_FULL.append(True)
            log.warning(
                "%d statements compiled for the driver's cursor: more run through "
                "SQLAlchemy (a caller may build a statement per call)",
                _COMPILED_MAX,
            )
        return None
    try:
        made: _Compiled | None = _Compiled(dialect, stmt)
    except (_NeedsSQLAlchemy, TypeError, ValueError, exc.SQLAlchemyError):
        made = None
    _COMPILED[key] = (dialect, stmt, made)
    return made


_COMPILED_FULL: list[bool] = []


def normalise_url(url: str) -> str:
    """Let operators write ``postgresql://`` and still get the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Hand transaction control to SQLAlchemy's "begin" event below, so that write
    # transactions can be BEGIN IMMEDIATE (pysqlite's own BEGIN is always deferred).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # FULL makes every commit durable across power loss, not just process crashes.
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()
    # The search index's case folding (``store.events.FTS_BATCH_SQL``): SQLite's own
    # (FTS5's) follows an old Unicode and folds letters PostgreSQL's ILIKE keeps apart.
    dbapi_conn.create_function(FOLD_FUNCTION, 1, _fold, deterministic=True)


#: The SQL name of ``domain.query.fold_case`` on SQLite connections.
FOLD_FUNCTION = "af_fold"


def _fold(value: object) -> object:
    return fold_case(value) if isinstance(value, str) else value


def _sqlite_on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
            pool_size=8,
            max_overflow=8,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=10)
    event.listen(engine, "connect", _utc_session)
    dialect = engine.dialect

    def ping_on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        # SQLAlchemy's ``pool_pre_ping``, unless the caller retries by itself (``_PING``)
        # or the server has said nothing since the connection went idle: on a connection
        # the server dropped (a restart, ``pg_terminate_backend``, an idle timeout),
        # ``DisconnectionError`` makes the pool discard it and check out another.
        if not _PING.get() or _server_silent(dbapi_conn):
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as err:
            if dialect.is_disconnect(err, dbapi_conn, None):
                raise exc.DisconnectionError() from err
            raise

    event.listen(engine, "checkout", ping_on_checkout)
    return engine


def _server_silent(dbapi_conn: Any) -> bool:
    """Whether nothing waits to be read on an idle pooled connection's socket.

    A server that drops a connection says so first (a FATAL error, then the end of the
    stream), and both wait in the socket until read; a live idle connection has nothing
    to read (the pool's connections never LISTEN). So a silent socket needs no ping, a
    round trip (0.15-0.35 ms, a sixth of a "mark all seen"); one with anything to read
    gets the ping, which then finds out. A server gone without a word (a host lost in a
    partition) leaves both this check and the ping to wait for TCP's timeout alike."""
    import psycopg  # imported by then (a PostgreSQL connection); not at all on SQLite

    try:
        fd = dbapi_conn.pgconn.socket
        readable, _, _ = select.select([fd], [], [], 0)
    except (AttributeError, OSError, ValueError, psycopg.Error):
        return False
    return not readable


#: False while ``Database.read_retrying`` checks a connection out: it runs its read once
#: more on a new connection instead of paying a ping (a round trip) for every checkout.
_PING = ContextVar("activityfeed_ping_on_checkout", default=True)


def make_unpooled_engine(url: str) -> Engine:
    """An engine for one-off work (migrations, CLI) that keeps no connections open."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, poolclass=NullPool)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    engine = create_engine(url, poolclass=NullPool)
    event.listen(engine, "connect", _utc_session)
    return engine


def _utc_session(dbapi_conn: Any, _record: Any) -> None:
    """Put a new PostgreSQL connection's session in UTC, once, when the pool opens it.

    psycopg gives ``timestamptz`` values the session's time zone: with the server's
    ``Etc/UTC`` that is a ``ZoneInfo``, which ``UTCDateTime`` then converts value by
    value (half a microsecond each, every time of every row of a page); in ``UTC`` it
    is ``datetime.timezone.utc`` itself, which needs no conversion. No statement of
    ours depends on the session's zone (days are cut ``AT TIME ZONE 'UTC'``)."""
    with dbapi_conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
    dbapi_conn.commit()


class Database:
    """Owns the engine; hands out transactions."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = normalise_url(url)
        self.engine = engine or make_engine(self.url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A read-write transaction; commits when the block ends without an exception."""
        yield from self._tx(is_write=True)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only transaction (a consistent snapshot on both databases)."""
        yield from self._tx(is_write=False)

    def read_retrying(self, fn: Callable[[Tx], T]) -> T:
        """``fn``'s result in a read transaction, whose connection the pool hands out
        without its ping (a round trip less on PostgreSQL). If the server had dropped
        it (a restart), ``fn`` runs once more, in a new read transaction on a pinged
        connection. ``fn`` must change nothing outside the database (a read changes
        nothing inside it), since it may run twice."""
        if self.dialect == "postgresql":
            try:
                with self._unpinged_read() as tx:
                    return fn(tx)
            except exc.DBAPIError as err:
                # The pool has discarded the connection, and will refresh the others it
                # handed out before this failure when they are next checked out.
                if not err.connection_invalidated:
                    raise
                log.warning("a read found its connection dropped; once more: %s", err.orig)
        with self.read() as tx:
            return fn(tx)

    @contextmanager
    def _unpinged_read(self) -> Iterator[Tx]:
        yield from self._tx(is_write=False, ping=False)

    def _connect(self, *, ping: bool) -> Connection:
        if ping:
            return self.engine.connect()
        token = _PING.set(False)
        try:
            return self.engine.connect()
        finally:
            _PING.reset(token)

    def _tx(self, *, is_write: bool, ping: bool = True) -> Iterator[Tx]:
        with self._connect(ping=ping) as conn:
            if self.dialect == "sqlite":
                conn = conn.execution_options(sqlite_begin="IMMEDIATE" if is_write else "DEFERRED")
            elif not is_write:
                # One snapshot for the whole read: a page, its total and its unseen count
                # agree with each other even while events arrive.
                conn = conn.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            tx = Tx(conn=conn, is_write=is_write)
            with conn.begin():
                yield tx
        for fn in tx._after_commit:
            try:
                fn()
            except Exception:
                # The change is committed; a failed notification must not turn the
                # response into an error (clients catch up via Last-Event-ID).
                log.exception("post-commit hook failed")

    def dispose(self) -> None:
        self.engine.dispose()
