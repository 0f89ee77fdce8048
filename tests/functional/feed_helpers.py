"""Shared set-up for the activity and ingestion tests: a team, a producer key, a viewer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from activityfeed.domain.accounts import User, Workspace
from activityfeed.domain.events import Action, Actor, EventDraft, ResourceType, Source, SourceKind
from activityfeed.domain.workspaces import Role
from activityfeed.services.events import record_event
from activityfeed.store.db import Database
from tests.factories import Browser, ingest, make_key, make_team, make_user


@dataclass
class World:
    """A team workspace with an owner (who made the producer key) and a member.

    The key's own ``api_key`` event is private to the owner, so the member's feed holds
    exactly what the test ingests.
    """

    app: FastAPI
    client: TestClient
    db: Database
    clock: Callable[[], datetime]
    owner: User
    member: User
    team: Workspace
    secret: str
    viewer: Browser

    def send(self, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Ingest events in batches of up to 1000; the recorded events, in order."""
        out: list[dict[str, Any]] = []
        for start in range(0, len(bodies), 1000):
            response = ingest(
                self.client, self.secret, {"events": list(bodies[start : start + 1000])}
            )
            assert response.status_code == 201, response.text
            out.extend(response.json()["events"])
        return out

    def browser(self, user: User) -> Browser:
        browser = Browser(self.app, user.email)
        browser.switch(self.team.slug)
        return browser


def make_world(app: FastAPI, client: TestClient, db: Database, clock: Any) -> World:
    owner = make_user(db, clock)
    member = make_user(db, clock)
    team = make_team(db, clock, owner, [(member, Role.MEMBER)])
    secret = make_key(db, clock, owner, team)
    viewer = Browser(app, member.email)
    viewer.switch(team.slug)
    return World(
        app=app,
        client=client,
        db=db,
        clock=clock,
        owner=owner,
        member=member,
        team=team,
        secret=secret,
        viewer=viewer,
    )


def record_private(
    db: Database,
    clock: Callable[[], datetime],
    user: User,
    workspace: Workspace,
    resource_type: ResourceType,
    action: Action = Action.UPDATED,
) -> str:
    """Record a platform event (as the platform's own modules do, in-process)."""
    with db.write() as tx:
        event = record_event(
            tx,
            EventDraft(
                workspace_id=workspace.id,
                resource_type=resource_type,
                action=action,
                resource_id=f"{resource_type.value}-1",
                resource_name=resource_type.value,
                actor=Actor(id=user.id, name=user.name, email=user.email),
                source=Source(kind=SourceKind.UI),
            ),
            now=clock(),
        )
    return event.id


def ids(feed: dict[str, Any]) -> list[str]:
    return [e["id"] for e in feed["events"]]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def assert_error(
    response: Any, status: int, code: str, field: str | None = None, *, case: Any = None
) -> dict[str, Any]:
    """The response is ``{"error": {"code", "message"}}`` with that status (and field).

    ``case`` names the input in the failure message when a test loops over many.
    """
    where = f"case {case!r}: " if case is not None else ""
    assert response.status_code == status, where + response.text[:500]
    body = response.json()
    error = body["error"]
    assert error["code"] == code, where + str(body)
    assert isinstance(error["message"], str), where + str(body)
    assert error["message"], where + str(body)
    if field is not None:
        assert error.get("field") == field, where + str(body)
        assert field.split(".")[-1].split("[")[0] in error["message"], where + str(body)
    return dict(error)
