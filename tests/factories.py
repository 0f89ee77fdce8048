"""Plain functions that make test data through the services (no mocks of our database)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from activityfeed.domain.accounts import Scope, User, Workspace
from activityfeed.domain.events import Action, EventDraft, ResourceType, Source, SourceKind
from activityfeed.domain.workspaces import Role
from activityfeed.services import accounts, apikeys, workspaces
from activityfeed.services.events import record_event
from activityfeed.store import accounts as account_store
from activityfeed.store.db import Database

PASSWORD = "correct horse battery"
_counter = itertools.count(1)


def make_user(
    db: Database,
    clock: Callable[[], datetime],
    *,
    email: str | None = None,
    name: str | None = None,
    password: str = PASSWORD,
) -> User:
    n = next(_counter)
    with db.write() as tx:
        return accounts.create_user(
            tx,
            email=email or f"user{n}@example.com",
            name=name or f"User {n}",
            password=password,
            now=clock(),
        )


def record_system_event(
    db: Database,
    workspace_id: str,
    n: int,
    *,
    now: datetime,
    resource_type: ResourceType = ResourceType.TRAINING,
    action: Action = Action.COMPLETED,
) -> str:
    """Commit one system event (resource ``run-<n>``) through the service, in a
    transaction of its own, as a producer in another process would; its id."""
    with db.write() as tx:
        return record_event(
            tx,
            EventDraft(
                workspace_id=workspace_id,
                resource_type=resource_type,
                action=action,
                resource_id=f"run-{n}",
                resource_name=f"run-{n}",
                actor=None,
                source=Source(kind=SourceKind.SYSTEM),
            ),
            now=now,
        ).id


def personal_workspace(db: Database, user: User) -> Workspace:
    with db.read() as tx:
        ws = account_store.select_personal_workspace(tx, user.id)
    assert ws is not None
    return ws


def make_team(
    db: Database,
    clock: Callable[[], datetime],
    owner: User,
    members: list[tuple[User, Role]] = (),
    *,
    name: str = "Team",
) -> Workspace:  # type: ignore[assignment]
    with db.write() as tx:
        ws = workspaces.create_workspace(tx, user_id=owner.id, name=name, now=clock())
        for user, role in members:
            workspaces.add_member(
                tx, user_id=owner.id, slug=ws.slug, email=user.email, role=role, now=clock()
            )
    return ws


def make_key(
    db: Database, clock: Callable[[], datetime], user: User, workspace: Workspace | None = None
) -> str:
    """An events:write API key of ``workspace`` (default: the user's personal one)."""
    return make_api_key(db, clock, user, workspace).secret


def make_api_key(
    db: Database, clock: Callable[[], datetime], user: User, workspace: Workspace | None = None
) -> apikeys.CreatedKey:
    """``make_key``'s key with its secret, for tests that call the services with it."""
    ws = workspace or personal_workspace(db, user)
    with db.write() as tx:
        membership = workspaces.access_workspace(tx, user_id=user.id, workspace_id=ws.id)
        return apikeys.create_api_key(
            tx,
            user=user,
            membership=membership,
            name="test key",
            scopes=[Scope.EVENTS_WRITE],
            source=SourceKind.CLI,
            now=clock(),
        )


class Browser:
    """A signed-in browser: a TestClient with the session cookie that sends the CSRF
    token on every state-changing request, as the page does."""

    def __init__(self, app: FastAPI, email: str, password: str = PASSWORD) -> None:
        self.client = TestClient(app, base_url="http://testserver")
        response = self.client.post("/api/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        self.login = response.json()
        self.csrf: str = self.login["csrfToken"]

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf, **(extra or {})}

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, **kw)

    def post(
        self, url: str, json: Any = None, headers: dict[str, str] | None = None, **kw: Any
    ) -> Any:
        return self.client.post(url, json=json, headers=self._headers(headers), **kw)

    def patch(
        self, url: str, json: Any = None, headers: dict[str, str] | None = None, **kw: Any
    ) -> Any:
        return self.client.patch(url, json=json, headers=self._headers(headers), **kw)

    def delete(self, url: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.client.delete(url, headers=self._headers(headers), **kw)

    def switch(self, slug: str) -> None:
        response = self.post(f"/api/workspaces/{slug}/switch")
        assert response.status_code == 200, response.text

    def activity(self, **params: Any) -> dict[str, Any]:
        response = self.get("/api/activity", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())


def ingest(client: TestClient, secret: str, body: Any) -> Any:
    return client.post("/api/events", json=body, headers={"Authorization": f"Bearer {secret}"})


def event_body(n: int = 1, **overrides: Any) -> dict[str, Any]:
    body = {
        "resourceType": "training",
        "action": "completed",
        "resourceId": f"run-{n}",
        "resourceName": f"yolo-run-{n}",
    }
    body.update(overrides)
    return body
