"""The migrations build the schema the code expects, on both databases, and can be re-run.

* upgrade → downgrade to base → upgrade works on a fresh database, and the result works;
* ``upgrade`` on an up-to-date database changes nothing (data included);
* models and migrations do not drift (autogenerate finds no difference), and the
  objects that only migrations create (FTS, trigram index, partial index) are there;
* SQLite connections run in WAL mode with foreign keys on;
* ``activityfeed db upgrade`` can be run twice.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, MetaData, String, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from activityfeed.cli.main import app as cli_app
from activityfeed.domain import chain
from activityfeed.domain.accounts import Membership
from activityfeed.domain.events import Action, EventDraft, ResourceType, Source, SourceKind
from activityfeed.domain.query import ActivityQuery
from activityfeed.domain.workspaces import Role
from activityfeed.services import accounts, activity, integrity
from activityfeed.services.events import record_event
from activityfeed.store import accounts as account_store
from activityfeed.store import chain as chain_store
from activityfeed.store import migrate
from activityfeed.store.bulk import ROW_COLUMNS
from activityfeed.store.db import Database, make_unpooled_engine
from activityfeed.store.schema import events, metadata, workspaces
from tests.conftest import PG_ADMIN_URL


@pytest.fixture
def empty_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with nothing in it (not even the migrations)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    # Skips (or, in CI, fails) exactly as the other PostgreSQL tests do.
    request.getfixturevalue("pg_database")
    name = f"activityfeed_migrations_{os.getpid()}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def differences(url: str, target: MetaData = metadata) -> list[Any]:
    """What autogenerate would write to bring the database to ``target``."""
    engine = make_unpooled_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_object": migrate.include_object,
                    "compare_type": True,
                    "compare_server_default": True,
                },
            )
            return list(compare_metadata(context, target))
    finally:
        engine.dispose()


def snapshot(url: str) -> dict[str, Any]:
    """Everything about the schema, the migration-only objects and the version."""
    engine = make_unpooled_engine(url)
    try:
        insp = inspect(engine)
        tables = {
            name: {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(name)
                ],
                "indexes": sorted(
                    (i["name"] or "", tuple(map(str, i["column_names"])), bool(i["unique"]))
                    for i in insp.get_indexes(name)
                ),
                "foreign_keys": sorted(str(fk) for fk in insp.get_foreign_keys(name)),
                "unique": sorted(str(u) for u in insp.get_unique_constraints(name)),
            }
            for name in sorted(insp.get_table_names())
        }
        with engine.connect() as conn:
            return {
                "tables": tables,
                "objects": migration_only_objects(engine),
                "version": migrate.current_revision(engine),
                "users": conn.execute(text("SELECT count(*) FROM users")).scalar_one()
                if "users" in tables
                else None,
            }
    finally:
        engine.dispose()


def migration_only_objects(engine: Engine) -> dict[str, str]:
    """Name → definition of what the migrations add beyond ``store.schema``."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.execute(
                text(
                    "SELECT name, sql FROM sqlite_master "
                    "WHERE name IN ('events_fts', 'events_fts_insert', 'ix_events_private')"
                )
            ).all()
        else:
            rows = conn.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                    "AND indexname IN ('ix_events_search_trgm', 'ix_events_private')"
                )
            ).all()
    return {str(name): str(sql) for name, sql in rows}


def user_tables(url: str) -> list[str]:
    engine = make_unpooled_engine(url)
    try:
        return sorted(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def round_trip(
    url: str, name: str = "needle-in-haystack", search: str = "NEEDLE", *, record: bool = True
) -> None:
    """A user, an event and a search for it: the schema works, FTS trigger included.
    ``record=False`` only searches (for the event a previous call recorded)."""
    now = datetime.now(UTC)
    database = Database(url)
    try:
        with database.write() as tx:
            if record:
                accounts.create_user(
                    tx, email="mig@example.com", name="Mig", password="x" * 12, now=now
                )
            found = account_store.select_user_by_email(tx, "mig@example.com")
            assert found is not None
            user = found[0]
            workspace = account_store.select_personal_workspace(tx, user.id)
            assert workspace is not None
            if record:
                record_event(
                    tx,
                    EventDraft(
                        workspace_id=workspace.id,
                        resource_type=ResourceType.PROJECT,
                        action=Action.CREATED,
                        resource_id="p1",
                        resource_name=name,
                        actor=None,
                        source=Source(kind=SourceKind.SYSTEM),
                    ),
                    now=now,
                )
        with database.read() as tx:
            page = activity.list_activity(
                tx,
                viewer_id=user.id,
                membership=Membership(workspace=workspace, role=Role.OWNER),
                q=ActivityQuery(search=search, start=now - timedelta(days=1)),
                now=now,
                undo_window=timedelta(hours=1),
            )
        assert [v.event.resource_name for v in page.events] == [name]
    finally:
        database.dispose()


def test_upgrade_downgrade_upgrade_on_a_fresh_database(empty_url):
    """Down to nothing and back up leaves the same, working schema."""
    migrate.upgrade(empty_url)
    first = snapshot(empty_url)
    assert first["version"] == migrate.head_revision()
    assert set(first["tables"]) >= {t.name for t in metadata.sorted_tables}

    migrate.downgrade(empty_url, "base")
    assert user_tables(empty_url) == ["alembic_version"]

    migrate.upgrade(empty_url)
    assert snapshot(empty_url) == first
    assert differences(empty_url) == []
    round_trip(empty_url)


def test_upgrade_twice_changes_nothing(empty_url):
    """A second upgrade is a no-op: the same schema, version and rows."""
    migrate.upgrade(empty_url)
    round_trip(empty_url)
    before = snapshot(empty_url)
    assert before["users"] == 1
    migrate.upgrade(empty_url)
    assert snapshot(empty_url) == before
    assert migrate.is_current(empty_url)


def test_models_and_migrations_do_not_drift(database_url):
    """Autogenerate against ``store.schema`` finds nothing to do, with env.py's filter."""
    assert differences(database_url) == []


def test_drift_check_sees_a_difference(database_url):
    """The check above can fail: a column the migrations lack is reported."""
    changed = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["events"].append_column(Column("extra", String(10), nullable=True))
    diff = differences(database_url, changed)
    assert [(d[0], d[3].name) for d in diff] == [("add_column", "extra")]


def test_migration_only_objects_exist(database_url, backend):
    """What the drift check filters out is checked here: FTS on SQLite, trigram on
    PostgreSQL, and the partial index's predicate on both."""
    engine = make_unpooled_engine(database_url)
    try:
        objects = migration_only_objects(engine)
    finally:
        engine.dispose()
    if backend == "sqlite":
        # The FTS table is fed by insert_events in one statement per batch (0005 dropped
        # the per-row trigger).
        assert set(objects) == {"events_fts", "ix_events_private"}
        assert "trigram" in objects["events_fts"]
        assert "WHERE private_to IS NOT NULL" in objects["ix_events_private"]
    else:
        assert set(objects) == {"ix_events_search_trgm", "ix_events_private"}
        assert "gin_trgm_ops" in objects["ix_events_search_trgm"]
        assert "WHERE (private_to IS NOT NULL)" in objects["ix_events_private"]


@pytest.mark.parametrize("pooled", [True, False], ids=["app", "unpooled"])
def test_sqlite_runs_wal_with_foreign_keys(tmp_path, pooled):
    """Every connection we open (the app's pool, migrations and the CLI's engine) has
    WAL and foreign keys on; the file itself stays in WAL mode."""
    path = tmp_path / "wal.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    engine = Database(url).engine if pooled else make_unpooled_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO memberships (workspace_id, user_id, role, created_at) "
                    "VALUES ('w_missing', 'u_missing', 'owner', '2026-01-01 00:00:00')"
                )
            )
    finally:
        engine.dispose()
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()


def test_cli_db_upgrade_twice(tmp_path):
    """``activityfeed db upgrade --database-url ...`` creates the schema, then is a no-op."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(cli_app, ["db", "upgrade", "--database-url", url])
        assert result.exit_code == 0, result.output
        assert migrate.head_revision() in result.output
    assert migrate.is_current(url)


def test_0007_chains_the_history_already_stored(empty_url):
    """Upgrading a database with events backfills their checkpoints in canonical version
    2 (no ``seq``, as the code writes them), so the stored history verifies and new
    events chain after it; the downgrade drops the table."""
    before = ScriptDirectory.from_config(migrate.alembic_config(empty_url)).get_revision("0007")
    assert before is not None
    previous = str(before.down_revision)
    migrate.upgrade(empty_url, previous)
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    engine = make_unpooled_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(workspaces.insert().values(id="w_1", slug="old", name="Old",
                                                is_personal=False, created_at=at))  # fmt: skip
        rows = [
            dict.fromkeys(ROW_COLUMNS)
            | {
                "ws_ord": i,
                "id": f"e{i:05d}",
                "workspace_id": "w_1",
                "resource_type": "training",
                "action": "completed",
                "resource_id": f"r{i}",
                "resource_name": f"run {i}",
                "description": "Completed",
                "source_kind": "ui",
                "created_at": at + timedelta(minutes=i),
                "recorded_at": at,
                "metadata": {"i": i, "x": 1e20},
            }
            for i in range(1, 26)
        ]
        # What the written-out canonical form must treat as the code does: text beyond
        # ASCII, every column set, nested keys out of order, floats JSONB rewrites.
        rows[3] |= {
            "resource_name": "Zürich ☃ run",
            "description": 'Über "quotes" and \\ backslashes',
            "actor_id": "u_1",
            "actor_name": "Ada Lovelace",
            "actor_email": "ada@example.com",
            "source_kind": "api_key",
            "source_key_prefix": "afk_abcdefgh",
            "private_to": "u_1",
            "idempotency_key": "retry-4",
            "payload_hash": "ab" * 32,
            "created_at": at.replace(microsecond=0),
            "recorded_at": at + timedelta(microseconds=1),
            "metadata": {"z": {"b": [1.5, -0.0, 2.0], "a": None}, "é": True, "1": "one"},
        }
        rows[4]["metadata"] = {}
        conn.execute(events.insert(), rows)
    engine.dispose()

    migrate.upgrade(empty_url)
    database = Database(empty_url)
    try:
        with database.read() as tx:
            ((_, report),) = integrity.verify_workspaces(tx, slug="old")
            versions = {cp.version for cp in chain_store.iter_checkpoints(tx, "w_1")}
        assert report.ok, report
        assert report.events == 25
        assert versions == {chain.VERSION} == {2}
        with database.write() as tx:
            record_event(
                tx,
                EventDraft(
                    workspace_id="w_1",
                    resource_type=ResourceType.PROJECT,
                    action=Action.CREATED,
                    resource_id="p",
                    resource_name="p",
                    actor=None,
                    source=Source(SourceKind.SYSTEM),
                ),
                now=at,
            )
        with database.read() as tx:
            ((_, report),) = integrity.verify_workspaces(tx, slug="old")
        assert report.ok, report
        assert report.events == 26
    finally:
        database.dispose()

    migrate.downgrade(empty_url, previous)
    assert "event_checkpoints" not in user_tables(empty_url)
    migrate.upgrade(empty_url)
    assert differences(empty_url) == []


def test_0008_sums_the_day_counts_and_follows_them(empty_url):
    """The upgrade fills ``event_day_totals`` from ``event_day_counts``; from then on the
    triggers keep every (workspace, day, owner) total equal to the sum of its counts as
    counts are added, grown and removed; the downgrade drops the table."""
    migrate.upgrade(empty_url, "0007")
    engine = make_unpooled_engine(empty_url)
    upsert = text(
        "INSERT INTO event_day_counts(workspace_id, day, private_to, resource_type, action, n) "
        "VALUES (:w, :d, :p, :t, :a, :n) ON CONFLICT(workspace_id, day, private_to, "
        "resource_type, action) DO UPDATE SET n = event_day_counts.n + excluded.n"
    )
    sums = text(
        "SELECT workspace_id, day, private_to, sum(n) FROM event_day_counts "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    totals = text(
        "SELECT workspace_id, day, private_to, n FROM event_day_totals WHERE n <> 0 "
        "ORDER BY 1, 2, 3"
    )

    def add(conn: Any, *rows: tuple[str, str, str, str, str, int]) -> None:
        keys = ("w", "d", "p", "t", "a", "n")
        conn.execute(upsert, [dict(zip(keys, row, strict=True)) for row in rows])

    try:
        with engine.begin() as conn:
            add(conn, ("w_1", "2026-01-01", "", "training", "created", 3),
                ("w_1", "2026-01-01", "", "dataset", "updated", 2),
                ("w_1", "2026-01-01", "u_1", "settings", "updated", 1),
                ("w_2", "2026-01-02", "", "training", "failed", 4))  # fmt: skip
        migrate.upgrade(empty_url)
        with engine.begin() as conn:
            assert [tuple(r) for r in conn.execute(totals)] == [
                ("w_1", "2026-01-01", "", 5),
                ("w_1", "2026-01-01", "u_1", 1),
                ("w_2", "2026-01-02", "", 4),
            ]
            # A new day, a new owner, a count grown by an upsert, one removed.
            add(conn, ("w_1", "2026-01-01", "", "training", "created", 10),
                ("w_1", "2026-01-03", "", "model", "created", 7),
                ("w_2", "2026-01-02", "u_2", "settings", "updated", 1))  # fmt: skip
            conn.execute(text("DELETE FROM event_day_counts WHERE resource_type = 'dataset'"))
            assert [tuple(r) for r in conn.execute(totals)] == [
                tuple(r) for r in conn.execute(sums)
            ]
            assert conn.execute(text("SELECT sum(n) FROM event_day_totals")).scalar_one() == 26
    finally:
        engine.dispose()
    migrate.downgrade(empty_url, "0007")
    assert "event_day_totals" not in user_tables(empty_url)
    migrate.upgrade(empty_url)
    assert differences(empty_url) == []


def _key(url: str) -> bytes:
    engine = make_unpooled_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT name, secret FROM server_secrets")).all()
    finally:
        engine.dispose()
    assert [name for name, _ in rows] == ["positions"]
    return bytes(rows[0][1])


def test_0009_makes_the_installations_key_once(empty_url):
    """The key that seals cursors and stream positions is made by the migration (serving
    never has to write to read it), kept by later upgrades, and the one every process
    reads; emptied, the table gets a new one from its first reader."""
    from activityfeed.services import sealing
    from activityfeed.store import secrets

    migrate.upgrade(empty_url)
    key = _key(empty_url)
    assert len(key) == 64
    migrate.upgrade(empty_url)
    assert _key(empty_url) == key
    database = Database(empty_url)
    try:
        with database.write() as tx:
            assert secrets.secret(tx, sealing.POSITIONS_KEY, size=64) == key
            tx.conn.execute(text("DELETE FROM server_secrets"))
        with database.write() as tx:
            made = secrets.secret(tx, sealing.POSITIONS_KEY, size=64)
        with database.write() as tx:
            assert secrets.secret(tx, sealing.POSITIONS_KEY, size=64) == made
    finally:
        database.dispose()
    assert made != key
    assert _key(empty_url) == made


def test_0010_refills_sqlites_search_index_folded(empty_url, backend):
    """An index written before 0010 (FTS5's own, old-Unicode case folding) is rebuilt
    from ``events`` with the text folded as PostgreSQL folds it: a Georgian capital name
    recorded before the upgrade is found by its small letters after it."""
    if backend != "sqlite":
        pytest.skip("only SQLite has the trigram table (PostgreSQL searches by ILIKE)")
    georgian = "\u1c90\u1c91\u1c92-dataset"
    migrate.upgrade(empty_url, "0009")
    round_trip(empty_url, georgian, search=georgian)
    engine = make_unpooled_engine(empty_url)
    try:
        # The index as 0009's code wrote it: the text as stored.
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO events_fts(events_fts) VALUES ('delete-all')"))
            conn.execute(
                text(
                    "INSERT INTO events_fts(rowid, body) SELECT seq, resource_name || ' ' || "
                    "resource_type || ' ' || description FROM events"
                )
            )
        migrate.upgrade(empty_url)
        with engine.connect() as conn:
            sql = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'events_fts'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert "case_sensitive 1" in sql
    round_trip(empty_url, georgian, search="\u10d0\u10d1\u10d2", record=False)


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_0011_puts_the_day_totals_in_their_keys_index(empty_url):
    """On PostgreSQL, ``event_day_totals``'s key carries ``n`` after 0011 (and not
    after its downgrade): the totals stay, the triggers still add to them through the
    key, and a settled table's sum over days is read from the index alone. (SQLite: the
    migration does nothing, which every other test of the head shows.)"""
    migrate.upgrade(empty_url, "0010")
    engine = make_unpooled_engine(empty_url)
    key = text(
        "SELECT i.indnatts, i.indnkeyatts FROM pg_index i "
        "WHERE i.indexrelid = 'pk_event_day_totals'::regclass AND i.indisprimary"
    )
    add = text(
        "INSERT INTO event_day_counts(workspace_id, day, private_to, resource_type, action, n) "
        "VALUES ('w_1', :d, '', 'training', 'created', :n) ON CONFLICT(workspace_id, day, "
        "private_to, resource_type, action) DO UPDATE SET n = event_day_counts.n + excluded.n"
    )
    total = (
        "SELECT sum(n) FROM event_day_totals WHERE workspace_id = 'w_1' "
        "AND private_to IN ('', 'u_1') AND day >= '2026-01-01' AND day < '2026-03-01'"
    )
    try:
        with engine.begin() as conn:
            conn.execute(add, [{"d": f"2026-01-{day:02d}", "n": day} for day in range(1, 32)])
            assert tuple(conn.execute(key).one()) == (3, 3)
        migrate.upgrade(empty_url)
        with engine.begin() as conn:
            assert tuple(conn.execute(key).one()) == (4, 3)
            conn.execute(add, [{"d": "2026-01-31", "n": 100}, {"d": "2026-02-01", "n": 7}])
            assert conn.execute(text(total)).scalar_one() == sum(range(1, 32)) + 107
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE event_day_totals")
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_bitmapscan = off")
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + total))
        assert "Index Only Scan using pk_event_day_totals" in plan, plan
        migrate.downgrade(empty_url, "0010")
        with engine.begin() as conn:
            assert tuple(conn.execute(key).one()) == (3, 3)
            assert conn.execute(text(total)).scalar_one() == sum(range(1, 32)) + 107
    finally:
        engine.dispose()
    migrate.upgrade(empty_url)
    assert differences(empty_url) == []
