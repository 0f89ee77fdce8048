"""``activityfeed export --email E -o FILE``: a user's personal-data export, as the web gives it."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from activityfeed.cli.common import (
    DatabaseUrl,
    console,
    err_console,
    friendly_errors,
    now,
    settings_for,
)
from activityfeed.services import export as export_service
from activityfeed.store import migrate
from activityfeed.store.db import Database


def export(
    email: str = typer.Option(..., "--email", help="Whose data to export."),
    output: Path = typer.Option(
        ..., "--output", "-o", help="The ZIP file to write (replaced if it exists).", dir_okay=False
    ),
    database_url: str | None = DatabaseUrl,
) -> None:
    """Write a user's personal-data export (the ZIP of GET /api/settings/profile/export)."""
    settings = settings_for(database_url)
    migrate.upgrade(settings.database_url)
    db = Database(settings.database_url)
    # Written beside the target and renamed at the end: a failed export never leaves a
    # truncated file under the name asked for.
    partial = output.with_name(output.name + ".partial")
    try:
        with friendly_errors(), db.read() as tx:
            user = export_service.find_user(tx, email)
            total = export_service.count_events(tx, user.id)
            progress = Progress(
                TextColumn("[bold]Exporting events"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
            )
            task = progress.add_task("events", total=total)
            size = 0
            with progress, partial.open("wb") as out:
                for chunk in export_service.export_archive(
                    tx,
                    user_id=user.id,
                    now=now(),
                    progress=lambda n: progress.advance(task, n),
                ):
                    out.write(chunk)
                    size += len(chunk)
            os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
        db.dispose()
    console.print(f"Wrote {output} ({size:,} bytes, {total:,} events) for {user.email}.")
