"""`activityfeed serve` as an operator runs it: a real server process, real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from activityfeed.cli.main import app as cli  # noqa: F401  (the entry point must import)

BIN = Path(sys.executable).with_name("activityfeed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(database_url: str, *, workers: int = 1) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "ACTIVITYFEED_DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            proc.kill()
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"server did not start:\n{out}")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.stdout:
            proc.stdout.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_upgrades_and_answers(database_url, workers):
    """serve creates the schema itself; a user made by the CLI signs in over real HTTP."""
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
    with server(database_url, workers=workers) as base, httpx.Client(base_url=base) as http:
        login = http.post(
            "/api/auth/login", json={"email": "op@example.com", "password": "s3cret-pass"}
        )
        assert login.status_code == 200, login.text
        csrf = login.json()["csrfToken"]
        key = http.post("/api/api-keys", json={"name": "runner"}, headers={"X-CSRF-Token": csrf})
        assert key.status_code == 201, key.text
        secret = key.json()["secret"]
        sent = httpx.post(
            base + "/api/events",
            headers={"Authorization": f"Bearer {secret}"},
            json={
                "resourceType": "model",
                "action": "exported",
                "resourceId": "m1",
                "resourceName": "yolo11n",
            },
        )
        assert sent.status_code == 201, sent.text
        feed = http.get("/api/activity").json()
        assert feed["events"][0]["description"] == "Exported model yolo11n"
        assert http.get("/activity").status_code == 200
