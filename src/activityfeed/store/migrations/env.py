"""Alembic environment: migrations run on a fresh connection to the configured URL."""

from __future__ import annotations

from alembic import context

from activityfeed.store.db import make_unpooled_engine
from activityfeed.store.migrate import include_object
from activityfeed.store.schema import metadata

config = context.config


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url
    engine = make_unpooled_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            include_object=include_object,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
