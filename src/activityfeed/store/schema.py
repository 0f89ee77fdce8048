"""The schema, in SQLAlchemy Core. Alembic migrations create it; a test checks the two agree.

Objects that only one database has (SQLite's FTS5 table and its trigger, PostgreSQL's
trigram index) live in the migrations alone and are listed in ``MIGRATION_ONLY``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

MIGRATION_ONLY = frozenset({"events_fts", "ix_events_search_trgm"})


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on both databases.

    PostgreSQL stores ``timestamptz``. SQLite has no time type: it stores a fixed-width
    naive UTC text, so text order is time order and the indexes work.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; give a UTC-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonDoc = JSON().with_variant(JSONB(), "postgresql")

#: ``LIMIT 1`` written into the SQL rather than bound (``.limit(1)`` binds it). The
#: driver prepares a statement run often, and PostgreSQL plans a prepared statement's
#: generic plan for a bound LIMIT as if it kept a tenth of the rows: for "the newest
#: event of a workspace" that is a sort of all of them, so the server went on planning
#: every execution anew (0.3 ms each time, on every feed page). With the literal the
#: generic plan is the one-entry index read, and it is used.
LIMIT_ONE = literal_column("1", Integer)
# SQLite only aliases ROWID for exactly "INTEGER PRIMARY KEY", so the big seq is
# INTEGER there (64-bit anyway) and BIGINT on PostgreSQL.
Seq = BigInteger().with_variant(Integer(), "sqlite")

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("slug", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("is_personal", Boolean(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("workspace_id", String(32), ForeignKey("workspaces.id"), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id"), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index(None, "user_id"),
)

sessions = Table(
    "sessions",
    metadata,
    # SHA-256 of the cookie value: a stolen database does not yield live sessions.
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id"), nullable=False),
    Column("workspace_id", String(32), ForeignKey("workspaces.id"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime(), nullable=True),
    Index(None, "user_id"),
)

login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Seq, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    Column("address", String(64), nullable=False),
    Column("failed_at", UTCDateTime(), nullable=False),
    Index(None, "email", "failed_at"),
    Index(None, "address", "failed_at"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("workspace_id", String(32), ForeignKey("workspaces.id"), nullable=False),
    Column("created_by", String(32), ForeignKey("users.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("scopes", JsonDoc, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Index(None, "workspace_id"),
)

events = Table(
    "events",
    metadata,
    # Arrival order: watermarks, FTS rowids and the keyset tie-break use it.
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("workspace_id", String(32), ForeignKey("workspaces.id"), nullable=False),
    # 1, 2, 3 ... within the workspace, in seq order, with no gaps: the number of
    # events between two watermarks is a subtraction, not a COUNT over history.
    Column("ws_ord", BigInteger(), nullable=False),
    Column("resource_type", String(16), nullable=False),
    Column("action", String(16), nullable=False),
    Column("resource_id", String(128), nullable=False),
    Column("resource_name", String(300), nullable=False),
    Column("description", Text(), nullable=False),
    Column("actor_id", String(32), nullable=True),
    Column("actor_name", String(200), nullable=True),
    Column("actor_email", String(320), nullable=True),
    Column("source_kind", String(16), nullable=False),
    Column("source_key_prefix", String(16), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("metadata", JsonDoc, nullable=False),
    # Set for settings/api_key/onboarding events: the one user who may see them.
    Column("private_to", String(32), nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("payload_hash", String(64), nullable=True),
    # The newest-first feed of a workspace; private_to is carried so that the
    # visibility test needs no table lookup.
    Index("ix_events_feed", "workspace_id", "created_at", "seq", "private_to"),
    # Arrival order within a workspace: the newest event, and ranges above a watermark.
    Index("ux_events_arrival", "workspace_id", "seq", "ws_ord", unique=True),
    Index("ux_events_ord", "workspace_id", "ws_ord", unique=True),
    # Other users' private events are subtracted from watermark counts; they are few.
    Index(
        "ix_events_private",
        "workspace_id",
        "seq",
        "private_to",
        sqlite_where=text("private_to IS NOT NULL"),
        postgresql_where=text("private_to IS NOT NULL"),
    ),
    Index("ix_events_type_feed", "workspace_id", "resource_type", "created_at", "seq"),
    Index("ix_events_resource", "workspace_id", "resource_type", "resource_id"),
    Index("ux_events_idempotency", "workspace_id", "idempotency_key", unique=True),
)

# Events created per workspace, UTC day ("YYYY-MM-DD"), private_to ('' = public), type
# and action,
# kept by a trigger on events (migration 0006): the feed's total adds whole days here.
event_day_counts = Table(
    "event_day_counts",
    metadata,
    Column("workspace_id", String(32), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("private_to", String(32), primary_key=True),
    Column("resource_type", String(16), primary_key=True),
    Column("action", String(16), primary_key=True),
    Column("n", BigInteger(), nullable=False),
)

# ``event_day_counts`` summed over type and action (migration 0008, kept by triggers on
# ``event_day_counts``): an unfiltered total reads a row or two a day. On PostgreSQL the
# key's index carries ``n`` (migration 0011): the sum is an index-only scan instead of a
# heap page visited per row or two.
event_day_totals = Table(
    "event_day_totals",
    metadata,
    Column("workspace_id", String(32), nullable=False),
    Column("day", String(10), nullable=False),
    Column("private_to", String(32), nullable=False),
    Column("n", BigInteger(), nullable=False),
    PrimaryKeyConstraint("workspace_id", "day", "private_to", postgresql_include=["n"]),
)

# Tamper evidence (migration 0007): one row per recording transaction, covering the
# ws_ord range it appended; digest = sha256(previous digest, range, the events' leaf
# hashes). See domain/chain.py and docs/decisions/0003-tamper-evidence.md.
event_checkpoints = Table(
    "event_checkpoints",
    metadata,
    Column("workspace_id", String(32), primary_key=True),
    Column("last_ord", BigInteger(), primary_key=True),
    Column("first_ord", BigInteger(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("digest", String(64), nullable=False),
)

viewer_marks = Table(
    "viewer_marks",
    metadata,
    Column("user_id", String(32), ForeignKey("users.id"), primary_key=True),
    Column("workspace_id", String(32), ForeignKey("workspaces.id"), primary_key=True),
    # Each watermark is an event's (seq, ws_ord) pair, or (0, 0) for "none yet".
    Column("seen_seq", BigInteger(), nullable=False),
    Column("seen_ord", BigInteger(), nullable=False),
    Column("archived_seq", BigInteger(), nullable=False),
    Column("archived_ord", BigInteger(), nullable=False),
)

event_states = Table(
    "event_states",
    metadata,
    Column("user_id", String(32), ForeignKey("users.id"), primary_key=True),
    Column("event_seq", Seq, ForeignKey("events.seq"), primary_key=True),
    Column("workspace_id", String(32), nullable=False),
    Column("is_seen", Boolean(), nullable=True),
    Column("is_archived", Boolean(), nullable=True),
    Index(None, "user_id", "workspace_id", "event_seq"),
)

profiles = Table(
    "profiles",
    metadata,
    # The name lives in users.name; everything else a person sets in Settings is here.
    Column("user_id", String(32), ForeignKey("users.id"), primary_key=True),
    Column("bio", Text(), nullable=False),
    Column("company", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("training_failures", Boolean(), nullable=False),
    Column("weekly_digest", Boolean(), nullable=False),
    Column("email_digest", String(16), nullable=False),
    # Field key -> id of the settings event that last changed it: undo refuses to revert
    # a field whose last change is not the event being undone (undo after a second edit).
    Column("last_changes", JsonDoc, nullable=False),
    Column("onboarded_at", UTCDateTime(), nullable=True),
    Column("onboarding_event_id", String(32), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=True),
)

undos = Table(
    "undos",
    metadata,
    # Events are immutable, so "undone" lives here; the key lets an event be undone once.
    Column("event_id", String(32), ForeignKey("events.id"), primary_key=True),
    Column("undo_event_id", String(32), ForeignKey("events.id"), nullable=False, unique=True),
    Column("user_id", String(32), ForeignKey("users.id"), nullable=False),
    Column("undone_at", UTCDateTime(), nullable=False),
)


resources = Table(
    "resources",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("workspace_id", String(32), ForeignKey("workspaces.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text(), nullable=False),
    Column("is_public", Boolean(), nullable=False),
    Column("created_by", String(32), ForeignKey("users.id"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("trashed_at", UTCDateTime(), nullable=True),
    # Set while in Trash: when purge-trash may delete it for good.
    Column("purge_after", UTCDateTime(), nullable=True),
    # A deleted resource stays as a tombstone so its events can say when it went.
    Column("deleted_at", UTCDateTime(), nullable=True),
    # No foreign key: the source may live in a workspace the clone's members cannot see.
    Column("cloned_from", String(32), nullable=True),
    # The lists of one kind in one workspace, newest first.
    Index(None, "workspace_id", "kind", "created_at"),
    # purge-trash: what is due, without a scan of every resource.
    Index(
        "ix_resources_purge_after",
        "purge_after",
        sqlite_where=text("purge_after IS NOT NULL"),
        postgresql_where=text("purge_after IS NOT NULL"),
    ),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("resource_id", String(32), ForeignKey("resources.id"), nullable=False),
    Column("workspace_id", String(32), ForeignKey("workspaces.id"), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(200), nullable=False),
    Column("size_bytes", BigInteger(), nullable=False),
    Column("sha256", String(64), nullable=False),
    # The stored bytes' name under <data_dir>/uploads/blobs; a clone shares its source's.
    Column("blob_key", String(64), nullable=False),
    Column("created_by", String(32), ForeignKey("users.id"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index(None, "resource_id", "created_at"),
    Index(None, "blob_key"),
)


stream_changes = Table(
    "stream_changes",
    metadata,
    # The outbox of seen/archive changes for the live stream: other processes and
    # reconnecting tabs read it in seq order. AUTOINCREMENT on SQLite: pruning must never
    # let a seq be handed out twice (a client holding it would skip the new row).
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("workspace_id", String(32), nullable=False),
    Column("user_id", String(32), nullable=False),
    # The same user's previous change in the same workspace (0 for none): a replay whose
    # first row points past the client's position has lost pruned rows, so it resets.
    Column("prev_seq", BigInteger(), nullable=False),
    Column("action", String(16), nullable=False),
    Column("payload", JsonDoc, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index(None, "workspace_id", "user_id", "seq"),
    Index(None, "created_at"),
    sqlite_autoincrement=True,
)


server_secrets = Table(
    "server_secrets",
    metadata,
    # Keys of this installation, made on first use (``store.secrets``): "positions"
    # seals the cursors and stream positions clients are handed (domain/sealing.py).
    Column("name", String(40), primary_key=True),
    Column("secret", LargeBinary(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)
