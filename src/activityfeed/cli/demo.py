"""``activityfeed demo``: a ready-to-click feed on embedded SQLite."""

from __future__ import annotations

from datetime import timedelta

import typer
from rich.progress import Progress

from activityfeed.cli.common import DatabaseUrl, console, now, settings_for
from activityfeed.cli.serve import run_server
from activityfeed.domain.events import Actor
from activityfeed.domain.workspaces import Role
from activityfeed.services import accounts, workspaces
from activityfeed.services.events import record_events
from activityfeed.services.simulation import Cast, history, personal_history
from activityfeed.store import accounts as account_store
from activityfeed.store import events as event_store
from activityfeed.store import migrate
from activityfeed.store.db import Database

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"
TEAMMATE_EMAIL = "alice@example.com"
TEAM_NAME = "Vision Team"
BATCH = 500


def seed_demo(database_url: str, *, events: int = 3000) -> bool:
    """Create the demo accounts and a 90-day history unless they exist; True if created."""
    migrate.upgrade(database_url)
    db = Database(database_url)
    at = now()
    try:
        with db.write() as tx:
            if account_store.select_user_by_email(tx, DEMO_EMAIL) is not None:
                return False
            demo = accounts.create_user(
                tx, email=DEMO_EMAIL, name="Dana Demo", password=DEMO_PASSWORD, now=at
            )
            alice = accounts.create_user(
                tx, email=TEAMMATE_EMAIL, name="Alice Moreau", password="alice-password", now=at
            )
            team = workspaces.create_workspace(tx, user_id=demo.id, name=TEAM_NAME, now=at)
            workspaces.add_member(
                tx, user_id=demo.id, slug=team.slug, email=alice.email, role=Role.MEMBER, now=at
            )
            personal = account_store.select_personal_workspace(tx, demo.id)
            assert personal is not None
        people = [Actor(id=u.id, name=u.name, email=u.email) for u in (demo, alice)]
        cast = Cast(workspace_id=team.id, people=people, api_key_prefix="afk_runner01")
        start = at - timedelta(days=90)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("Recording 90 days of history", total=events)
            batch = []
            for draft in history(cast, start=start, end=at, count=events):
                batch.append(draft)
                if len(batch) == BATCH:
                    with db.write() as tx:
                        record_events(tx, batch, now=at)
                    progress.advance(task, len(batch))
                    batch = []
            if batch:
                with db.write() as tx:
                    record_events(tx, batch, now=at)
                progress.advance(task, len(batch))
        with db.write() as tx:
            record_events(tx, personal_history(personal.id, people[0], start=start, end=at), now=at)
        with db.read() as tx:
            count = event_store.select_head(tx, team.id)[1]
        console.print(f"Recorded {count} events in '{team.slug}'.")
        return True
    finally:
        db.dispose()


def demo(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    events: int = typer.Option(3000, "--events", min=0, help="Events of history to create."),
    database_url: str | None = DatabaseUrl,
) -> None:
    """Create (once) a demo account with a realistic history, then serve it."""
    settings = settings_for(database_url)
    created = seed_demo(settings.database_url, events=events)
    if not created:
        console.print("The demo data exists already; serving it.")
    console.print(
        f"\n[bold]Activity Feed demo[/bold] is at [link]http://{host}:{port}/activity[/link]\n"
        f"Sign in as [bold]{DEMO_EMAIL}[/bold] with password [bold]{DEMO_PASSWORD}[/bold]\n"
        f"(database: {settings.database_url}; Ctrl+C stops it)\n"
    )
    run_server(settings.database_url, host, port, 1)
