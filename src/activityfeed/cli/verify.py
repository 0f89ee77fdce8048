"""``activityfeed verify``: check the events' hash chain, in the database or in an export."""

from __future__ import annotations

from pathlib import Path

import typer

from activityfeed.cli.common import DatabaseUrl, console, err_console, friendly_errors, settings_for
from activityfeed.domain import chain
from activityfeed.services import integrity
from activityfeed.store import migrate
from activityfeed.store.db import Database


def verify(
    workspace: str | None = typer.Option(
        None, "--workspace", help="The slug of the one workspace to check; default: all."
    ),
    export: Path | None = typer.Option(
        None,
        "--export",
        exists=True,
        dir_okay=False,
        help="Check a personal-data export ZIP offline instead of the database.",
    ),
    expect_head: str | None = typer.Option(
        None,
        "--expect-head",
        help="A head printed earlier (<position>:<digest>) that the chain must pass through.",
    ),
    database_url: str | None = DatabaseUrl,
) -> None:
    """Check that no stored event was edited, removed, reordered or inserted.

    Prints one line per workspace with its head (keep it elsewhere: a later run with
    --expect-head then also catches a consistent rewrite or a cut-off tail) and exits
    with status 1 at the first break of any workspace, naming its position and kind.
    """
    anchor = None
    if expect_head is not None:
        try:
            anchor = chain.Head.parse(expect_head)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--expect-head") from None
        if workspace is None and export is None:
            raise typer.BadParameter("needs --workspace", param_hint="--expect-head")
    if export is not None:
        with friendly_errors():
            reports = integrity.verify_export(export, slug=workspace, anchor=anchor)
    else:
        url = settings_for(database_url).database_url
        if not migrate.is_current(url):
            # verify only reads: it does not upgrade (0007 would chain what it finds).
            err_console.print(
                "[red]error[/red]: the schema is not current; run activityfeed db upgrade."
            )
            raise typer.Exit(1)
        db = Database(url)
        try:
            with friendly_errors(), db.read() as tx:
                reports = integrity.verify_workspaces(tx, slug=workspace, anchor=anchor)
        finally:
            db.dispose()
    broken = 0
    for slug, report in reports:
        if report.broken is None:
            console.print(
                f"ok      {slug}  {report.events} events  head {report.head}",
                highlight=False,
                soft_wrap=True,
            )
        else:
            broken += 1
            b = report.broken
            err_console.print(
                f"BROKEN  {slug}  at position {b.ws_ord}: {b.kind.value} ({b.detail}); "
                f"verified up to {report.head}",
                highlight=False,
                soft_wrap=True,
            )
    if broken:
        raise typer.Exit(1)
