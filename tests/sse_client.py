"""A small Server-Sent Events reader for tests, on httpx streaming, and a real server.

``TestClient`` cannot read an endless body well, so stream tests run the app in a real
uvicorn server (``serve_app`` in a thread, or ``activityfeed serve`` in a subprocess)
and read it with ``SSEStream``: a thread parses the body into messages and a test takes
them with a timeout.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from activityfeed.cli.bench import free_port
from tests.factories import Browser


@dataclass
class SSEMessage:
    event: str
    id: str | None
    data: Any
    received_at: float


class SSEStream:
    """One open ``text/event-stream`` response, parsed in a background thread."""

    def __init__(
        self,
        base: str,
        cookies: dict[str, str],
        *,
        last_event_id: str | None = None,
        query_id: str | None = None,
        path: str = "/api/activity/stream",
    ) -> None:
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        params = {"lastEventId": query_id} if query_id is not None else {}
        self.http = httpx.Client(base_url=base, cookies=cookies, timeout=httpx.Timeout(10.0))
        self._cm = self.http.stream("GET", path, headers=headers, params=params)
        self.response = self._cm.__enter__()
        self.messages: queue.Queue[SSEMessage | None] = queue.Queue()
        self.retry: int | None = None
        self.comments: list[str] = []
        self.first_line: str | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        if self.response.status_code == 200:
            self._thread.start()

    def _read(self) -> None:
        event, data, last_id = "message", [], None
        try:
            for line in self.response.iter_lines():
                if self._closed:
                    return
                if self.first_line is None:
                    self.first_line = line
                if line == "":
                    if data:
                        payload = json.loads("\n".join(data))
                        self.messages.put(SSEMessage(event, last_id, payload, time.monotonic()))
                    event, data = "message", []
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    self.comments.append(value)
                elif name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    last_id = value
                elif name == "retry":
                    self.retry = int(value)
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self.messages.put(None)

    def next(self, timeout: float = 5.0) -> SSEMessage:
        """The next message; fails the test after ``timeout`` seconds."""
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no SSE message within {timeout} s") from None
        if message is None:
            raise AssertionError("the stream ended")
        return message

    def next_of(self, event: str, timeout: float = 5.0) -> SSEMessage:
        """The next message of type ``event``, skipping others (e.g. ``unseen``)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.next(max(0.01, deadline - time.monotonic()))
            if message.event == event:
                return message

    def drain(self, quiet: float = 0.5) -> list[SSEMessage]:
        """Every message that arrives until none has for ``quiet`` seconds."""
        out = []
        while True:
            try:
                message = self.messages.get(timeout=quiet)
            except queue.Empty:
                return out
            if message is None:
                return out
            out.append(message)

    def close(self) -> None:
        self._closed = True
        self._cm.__exit__(None, None, None)
        self.http.close()

    def __enter__(self) -> SSEStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def serve_app(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yields the base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def cookies(browser: Browser) -> dict[str, str]:
    """The browser's session cookie, for a client of a real server."""
    return {"af_session": browser.client.cookies["af_session"]}


def open_stream(base: str, browser: Browser, **kw: Any) -> SSEStream:
    """The browser's live stream on the server at ``base``; fails unless it opens."""
    stream = SSEStream(base, cookies(browser), **kw)
    assert stream.response.status_code == 200, stream.response.read()
    return stream
