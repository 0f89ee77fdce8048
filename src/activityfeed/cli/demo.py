"""``activityfeed demo``: a ready-to-click feed on embedded SQLite."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import typer
from rich.progress import Progress

from activityfeed.cli.common import DatabaseUrl, console, now, settings_for
from activityfeed.cli.serve import run_server
from activityfeed.cli.simulate import produce
from activityfeed.client import ActivityFeedClient
from activityfeed.domain import profiles
from activityfeed.domain.accounts import Membership, Scope, User
from activityfeed.domain.events import Actor, SourceKind
from activityfeed.domain.resources import ResourceKind
from activityfeed.domain.workspaces import Role
from activityfeed.services import accounts, apikeys, resources, settings, workspaces
from activityfeed.services.events import record_events
from activityfeed.services.simulation import Cast, history, personal_history
from activityfeed.store import accounts as account_store
from activityfeed.store import events as event_store
from activityfeed.store import migrate
from activityfeed.store.blobs import Blobs
from activityfeed.store.db import Database, Tx

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"
TEAMMATE_EMAIL = "alice@example.com"
TEAM_NAME = "Vision Team"
BATCH = 500


def seed_demo(database_url: str, *, events: int = 3000, data_dir: Path | None = None) -> bool:
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
        with db.write() as tx:
            membership = next(
                m
                for m in account_store.select_memberships(tx, demo.id)
                if m.workspace.id == team.id
            )
            seed_platform(tx, demo, membership, data_dir=data_dir or Path.cwd(), at=now())
        with db.read() as tx:
            count = event_store.select_head(tx, team.id)[1]
        console.print(f"Recorded {count} events in '{team.slug}'.")
        return True
    finally:
        db.dispose()


def seed_platform(tx: Tx, user: User, team: Membership, *, data_dir: Path, at: datetime) -> None:
    """What the platform's own modules record, through the same services the web uses: a
    live project, a dataset in Trash, a deleted model (their rows show the resource's
    state) and a profile change that is still undoable."""
    source = SourceKind.UI

    def make(kind: ResourceKind, name: str, description: str) -> str:
        return resources.create_resource(
            tx,
            user=user,
            membership=team,
            kind=kind,
            name=name,
            description=description,
            source=source,
            now=at,
        ).id

    make(ResourceKind.PROJECT, "traffic-signs", "Detect and classify road signs.")
    trashed = make(ResourceKind.DATASET, "street-scenes-2025", "Dash-cam frames, unlabelled.")
    resources.trash_resource(
        tx,
        user=user,
        membership=team,
        kind=ResourceKind.DATASET,
        resource_id=trashed,
        source=source,
        now=at,
    )
    deleted = make(ResourceKind.MODEL, "yolov8n-draft", "A first try, superseded.")
    resources.delete_resource(
        tx,
        user=user,
        membership=team,
        kind=ResourceKind.MODEL,
        resource_id=deleted,
        source=source,
        blobs=Blobs(data_dir),
        now=at,
    )
    settings.update_profile(
        tx,
        user=user,
        patch={profiles.TIMEZONE: "Europe/Paris", profiles.COMPANY: "Acme Vision"},
        source=source,
        now=at,
        undo_window=timedelta(hours=1),
    )


def producer_key(database_url: str) -> str:
    """A fresh API key of the demo team for the live producer (one per demo start)."""
    db = Database(database_url)
    try:
        with db.write() as tx:
            found = account_store.select_user_by_email(tx, DEMO_EMAIL)
            assert found is not None
            user = found[0]
            team = next(
                m
                for m in account_store.select_memberships(tx, user.id)
                if m.workspace.name == TEAM_NAME
            )
            created = apikeys.create_api_key(
                tx,
                user=user,
                membership=team,
                name="demo live producer",
                scopes=[Scope.EVENTS_WRITE],
                source=SourceKind.SYSTEM,
                now=now(),
            )
        return created.secret
    finally:
        db.dispose()


def start_live_producer(base_url: str, secret: str, *, rate: float) -> threading.Event:
    """Report platform work to the demo server every few seconds, in a daemon thread."""
    stop = threading.Event()

    def run() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stop.is_set():
            try:
                if httpx.get(base_url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                stop.wait(0.3)
        with ActivityFeedClient(base_url, secret, max_retries=2) as client:
            produce(client, rate=rate, duration=None, stop=stop)

    threading.Thread(target=run, name="demo-producer", daemon=True).start()
    return stop


def demo(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    events: int = typer.Option(3000, "--events", min=0, help="Events of history to create."),
    live_rate: float = typer.Option(
        0.3, "--live-rate", min=0.0, help="Live events per second (0 turns the producer off)."
    ),
    database_url: str | None = DatabaseUrl,
) -> None:
    """Create (once) a demo account with a realistic history, then serve it live."""
    settings = settings_for(database_url)
    created = seed_demo(settings.database_url, events=events, data_dir=settings.data_dir)
    if not created:
        console.print("The demo data exists already; serving it.")
    if live_rate > 0:
        secret = producer_key(settings.database_url)
        start_live_producer(f"http://{host}:{port}", secret, rate=live_rate)
    console.print(
        f"\n[bold]Activity Feed demo[/bold] is at [link]http://{host}:{port}/activity[/link]\n"
        f"Sign in as [bold]{DEMO_EMAIL}[/bold] with password [bold]{DEMO_PASSWORD}[/bold]\n"
        f"(database: {settings.database_url}; a producer reports new work every few "
        "seconds; Ctrl+C stops it)\n"
    )
    run_server(settings.database_url, host, port, 1)
