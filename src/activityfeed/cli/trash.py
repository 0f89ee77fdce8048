"""``activityfeed purge-trash``: delete the resources whose 30 days in Trash are over."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from activityfeed.cli.common import DatabaseUrl, console, friendly_errors, now
from activityfeed.config import Settings
from activityfeed.services import resources
from activityfeed.store import migrate
from activityfeed.store.blobs import Blobs
from activityfeed.store.db import Database


def purge_trash(
    database_url: str | None = DatabaseUrl,
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        envvar="ACTIVITYFEED_DATA_DIR",
        help="The folder that holds uploads; default: the working folder.",
        show_envvar=True,
    ),
) -> None:
    """Delete for good every project, dataset and model whose time in Trash is over.

    Each one is deleted in its own transaction with a `deleted` event from the system;
    its events stay. Safe to run at any time, and again (cron, a systemd timer).
    """
    settings = Settings.from_env(database_url=database_url, data_dir=data_dir)
    migrate.upgrade(settings.database_url)
    db = Database(settings.database_url)
    blobs = Blobs(settings.data_dir)
    started = now()
    purged = 0
    try:
        with friendly_errors():
            with db.read() as tx:
                total = resources.count_due_for_purge(tx, now=started)
            with Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as progress:
                task = progress.add_task("Purging Trash", total=total)
                skipped: set[str] = set()
                while True:
                    with db.read() as tx:
                        due = [
                            r
                            for r in resources.due_for_purge(tx, now=started)
                            if r.id not in skipped
                        ]
                    if not due:
                        break
                    for r in due:
                        with db.write() as tx:
                            done = resources.purge_resource(tx, due=r, blobs=blobs, now=now())
                        if done is None:
                            # Restored or deleted meanwhile: not ours to delete.
                            skipped.add(r.id)
                        else:
                            purged += 1
                        progress.advance(task)
    finally:
        db.dispose()
    console.print(f"Deleted {purged} resource{'s' if purged != 1 else ''} from Trash.")
