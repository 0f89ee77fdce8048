"""activityfeed.client and `activityfeed simulate` against a real server process."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from activityfeed.client import (
    ActivityFeedClient,
    AsyncActivityFeedClient,
    EventIn,
    RequestRejected,
    ServerUnavailable,
)
from activityfeed.store.db import Database
from activityfeed.store.schema import events
from tests.e2e.test_serve import BIN, free_port, server


@pytest.fixture
def live(database_url: str) -> Iterator[tuple[str, str]]:
    """A running server and an events:write key of the operator's personal workspace."""
    subprocess.run(
        [
            str(BIN),
            "user",
            "create",
            "--email",
            "op@example.com",
            "--name",
            "Op",
            "--password",
            "s3cret-pass",
            "--database-url",
            database_url,
        ],
        check=True,
        capture_output=True,
    )
    key = (
        subprocess.run(
            [
                str(BIN),
                "apikey",
                "create",
                "--email",
                "op@example.com",
                "--name",
                "runner",
                "--database-url",
                database_url,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    with server(database_url) as base:
        yield base, key


def stored(database_url: str) -> int:
    db = Database(database_url)
    try:
        with db.read() as tx:
            # The key's own "created" event is recorded too; count only reported work.
            return int(
                tx.conn.execute(
                    select(func.count())
                    .select_from(events)
                    .where(events.c.source_kind == "api_key")
                ).scalar_one()
            )
    finally:
        db.dispose()


class LoseFirstResponse(httpx.BaseTransport):
    """Delivers every request, but the first response is 'lost' on the way back."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        response = self.real.handle_request(request)
        if self.calls == 1:
            response.read()
            response.close()
            raise httpx.ReadError("connection reset", request=request)
        return response

    def close(self) -> None:
        self.real.close()


def test_a_retried_batch_is_stored_once(live, database_url):
    """The response to a batch is lost; the retry reuses the idempotency keys."""
    base, key = live
    transport = LoseFirstResponse()
    batch = [EventIn("training", "completed", f"run-{i}", f"yolo run {i}") for i in range(5)]
    with ActivityFeedClient(base, key, transport=transport, backoff=0.01) as client:
        sent = client.send_batch(batch)
    assert transport.calls == 2
    assert [e["resourceId"] for e in sent] == [f"run-{i}" for i in range(5)]
    assert stored(database_url) == 5


def test_a_bad_item_raises_naming_the_item_and_field(live, database_url):
    base, key = live
    with ActivityFeedClient(base, key) as client, pytest.raises(RequestRejected) as caught:
        client.send_batch(
            [
                EventIn("training", "started", "run-1", "ok"),
                EventIn("training", "exploded", "run-2", "bad"),
            ]
        )
    assert caught.value.status == 422
    assert caught.value.code == "invalid_request"
    assert caught.value.field == "events[1].action"
    assert stored(database_url) == 0


def test_429_is_retried_after_the_servers_delay(live, database_url):
    base, key = live
    real = httpx.HTTPTransport()
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(
                429,
                headers={"Retry-After": "0"},
                json={"error": {"code": "too_many_attempts", "message": "x"}},
            )
        return real.handle_request(request)

    with real, ActivityFeedClient(base, key, transport=httpx.MockTransport(handler)) as client:
        event = client.send("model", "exported", resource_id="m1", resource_name="yolo11n")
    assert event["description"] == "Exported model yolo11n"
    assert len(calls) == 2
    assert stored(database_url) == 1


def test_async_client_sends_and_replays(live, database_url):
    base, key = live

    async def go() -> tuple[dict, dict]:
        async with AsyncActivityFeedClient(base, key) as client:
            first = await client.send(
                "dataset",
                "uploaded",
                resource_id="d1",
                resource_name="coco",
                idempotency_key="upload-d1",
            )
            again = await client.send(
                "dataset",
                "uploaded",
                resource_id="d1",
                resource_name="coco",
                idempotency_key="upload-d1",
            )
            return first, again

    first, again = asyncio.run(go())
    assert first["id"] == again["id"]
    assert stored(database_url) == 1


def test_an_unreachable_server_gives_up_clearly():
    port = free_port()
    with (
        ActivityFeedClient(
            f"http://127.0.0.1:{port}", "afk_x", max_retries=2, backoff=0.01
        ) as client,
        pytest.raises(ServerUnavailable),
    ):
        client.send("model", "created", resource_id="m", resource_name="m")


def test_simulate_reports_work_with_a_progress_bar(live, database_url):
    base, key = live
    result = subprocess.run(
        [
            str(BIN),
            "simulate",
            "--rate",
            "20",
            "--duration",
            "1.5",
            "--url",
            base,
            "--api-key",
            key,
            "--seed",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Sent" in result.stdout
    assert 15 <= stored(database_url) <= 40


def test_demo_keeps_a_live_producer_running(tmp_path):
    """`activityfeed demo` serves the seeded history and new work keeps arriving."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN),
            "demo",
            "--port",
            str(port),
            "--events",
            "50",
            "--live-rate",
            "5",
            "--database-url",
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 45
        live_events = 0
        while time.monotonic() < deadline and live_events < 3:
            time.sleep(0.5)
            try:
                live_events = stored_after_seed(url)
            except OperationalError:  # the demo has not made the schema yet
                continue
        assert live_events >= 3
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert "demo@example.com" in out
    assert "demo-password" in out
    assert f"http://127.0.0.1:{port}/activity" in out


def stored_after_seed(database_url: str) -> int:
    db = Database(database_url)
    try:
        with db.read() as tx:
            return int(
                tx.conn.execute(
                    select(func.count())
                    .select_from(events)
                    .where(
                        events.c.source_kind == "api_key",
                        events.c.source_key_prefix != "afk_runner01",
                    )
                ).scalar_one()
            )
    finally:
        db.dispose()
