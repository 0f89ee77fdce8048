"""``activityfeed db upgrade``."""

from __future__ import annotations

import typer

from activityfeed.cli.common import DatabaseUrl, console, settings_for
from activityfeed.store import migrate

app = typer.Typer(help="Create or migrate the database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(database_url: str | None = DatabaseUrl) -> None:
    """Create or migrate the schema to the newest version (safe to run again)."""
    settings = settings_for(database_url)
    migrate.upgrade(settings.database_url)
    console.print(f"Schema is at revision {migrate.head_revision()}.")
