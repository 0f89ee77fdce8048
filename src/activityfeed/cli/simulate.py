"""``activityfeed simulate``: realistic platform work sent to any server's ingestion API."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from activityfeed.cli.common import console, err_console
from activityfeed.client import ActivityFeedClient, ActivityFeedError
from activityfeed.domain.events import Actor
from activityfeed.services.simulation import Cast, LiveScript, to_ingestion

#: Ingested events carry no actor; the cast only shapes the stories.
_CAST = Cast(workspace_id="", people=[Actor(id="sim", name="Simulator", email="")])


def produce(
    client: ActivityFeedClient,
    *,
    rate: float,
    duration: float | None,
    stop: threading.Event,
    on_sent: Callable[[int], None] | None = None,
    seed: int | None = None,
    follow_up: tuple[float, float] = (3.0, 15.0),
) -> int:
    """Send about ``rate`` events per second until ``duration`` passes or ``stop`` is set.

    Events go out in small batches (one per tick); a batch that fails after the client's
    retries is reported and skipped. Returns how many events were stored.
    """
    script = LiveScript(_CAST, seed=seed, follow_up=follow_up)
    started = last = time.monotonic()
    budget = 1.0
    sent = 0
    tick = min(1.0, max(0.05, 1.0 / max(rate, 0.001)))
    while not stop.is_set():
        now = time.monotonic()
        if duration is not None and now - started >= duration:
            break
        budget += rate * (now - last)
        last = now
        batch = []
        while budget >= 1.0:
            batch.append(to_ingestion(script.next_event(now)))
            budget -= 1.0
        if batch:
            try:
                stored = client.send_batch(batch)
            except ActivityFeedError as exc:
                err_console.print(f"[yellow]batch of {len(batch)} not sent:[/yellow] {exc}")
            else:
                sent += len(stored)
                if on_sent is not None:
                    on_sent(len(stored))
        stop.wait(tick)
    return sent


def simulate(
    rate: float = typer.Option(5.0, "--rate", min=0.01, help="Events per second."),
    duration: float = typer.Option(60.0, "--duration", min=0.1, help="Seconds to run."),
    url: str = typer.Option(
        "http://127.0.0.1:8000", "--url", envvar="ACTIVITYFEED_URL", help="The server's base URL."
    ),
    api_key: str = typer.Option(
        ...,
        "--api-key",
        envvar="ACTIVITYFEED_API_KEY",
        help="An API key with events:write (activityfeed apikey create).",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Repeatable stories."),
) -> None:
    """Report realistic platform work (trainings, exports, deployments, uploads) to a server."""
    stop = threading.Event()
    with (
        ActivityFeedClient(url, api_key) as client,
        Progress(
            TextColumn("Sending events"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("send", total=max(1, round(rate * duration)))
        try:
            sent = produce(
                client,
                rate=rate,
                duration=duration,
                stop=stop,
                seed=seed,
                on_sent=lambda n: progress.advance(task, n),
            )
        except KeyboardInterrupt:
            stop.set()
            raise typer.Exit(130) from None
    console.print(f"Sent {sent} events to {url}.")
