"""Run the Alembic migrations from code (``activityfeed db upgrade``, tests, ``serve``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from activityfeed.store.db import make_unpooled_engine, normalise_url
from activityfeed.store.schema import MIGRATION_ONLY

MIGRATIONS = Path(__file__).with_name("migrations")


def include_object(
    # Alembic calls this with five positional arguments; only the name matters here.
    _obj: object,
    name: str | None,
    _type: str,
    _reflected: bool,
    _compare_to: object,
) -> bool:
    """Alembic's filter for autogenerate and for the drift test: leave out what exists
    in migrations only (the FTS table and its shadow tables, the trigram index)."""
    return not (name and (name in MIGRATION_ONLY or name.startswith("events_fts")))


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's config is ConfigParser-backed: a literal % must be doubled.
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the schema to ``revision``. Running it again changes nothing."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_current(url: str) -> bool:
    engine = make_unpooled_engine(url)
    try:
        return current_revision(engine) == head_revision()
    finally:
        engine.dispose()
