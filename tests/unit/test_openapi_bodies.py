"""Every success answer in the OpenAPI document has a strict schema, and the wire models
behind those schemas accept exactly what the ``*_public`` functions send.

The fuzz test (tests/functional/test_fuzz_openapi.py) checks answers against the
document, which it can only do where the document is strict: an open object accepts any
body. So a route added without a documented success body fails here, at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from activityfeed.config import Settings
from activityfeed.domain import profiles
from activityfeed.domain.accounts import ApiKey, Membership, Scope, User, Workspace
from activityfeed.domain.events import (
    Action,
    Actor,
    Event,
    EventView,
    ResourceState,
    ResourceType,
    Source,
    SourceKind,
)
from activityfeed.domain.profiles import Profile
from activityfeed.domain.resources import Resource, ResourceKind, Upload
from activityfeed.domain.workspaces import Role
from activityfeed.web import create_app
from activityfeed.web import schemas as s

#: Answers that are not JSON, with their one media type.
NOT_JSON = {
    ("get", "/api/activity/stream"): "text/event-stream",
    ("get", "/api/settings/profile/export"): "application/zip",
}
#: Objects that are free-form by contract (docs/api.md): component.property.
FREE_FORM = {"EventPublic.metadata"}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # Building the document reads no table, so an empty database file will do.
    folder = tmp_path_factory.mktemp("openapi")
    settings = Settings(database_url=f"sqlite:///{folder / 'none.db'}", data_dir=folder)
    return create_app(settings).openapi()


def _successes(document: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith("2"):
                    yield method, path, status, response


def _open_objects(
    schema: dict[str, Any], document: dict[str, Any], where: str, seen: set[str]
) -> Iterator[str]:
    """Where ``schema`` admits a JSON object with keys it does not name, or any value."""
    components = document["components"]["schemas"]
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        if name not in seen:
            seen.add(name)
            yield from _open_objects(components[name], document, name, seen)
        return
    branches = schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", [])
    for branch in branches:
        yield from _open_objects(branch, document, where, seen)
    if branches:
        return
    kind = schema.get("type")
    if kind is None and "enum" not in schema and "const" not in schema:
        yield f"{where}: no type"
    elif kind == "object":
        if where not in FREE_FORM and schema.get("additionalProperties") is not False:
            yield f"{where}: an open object"
        for name, prop in schema.get("properties", {}).items():
            yield from _open_objects(prop, document, f"{where}.{name}", seen)
    elif kind == "array":
        yield from _open_objects(schema.get("items", {}), document, f"{where}[]", seen)


def test_every_success_answer_has_a_strict_schema(document):
    """A 2xx without content, or with an open object anywhere in it, would let any body
    pass the fuzz test's schema check."""
    problems = []
    count = 0
    for method, path, status, response in _successes(document):
        count += 1
        at = f"{method.upper()} {path} {status}"
        content = response.get("content") or {}
        if (method, path) in NOT_JSON:
            if list(content) != [NOT_JSON[method, path]]:
                problems.append(f"{at}: documents {list(content)}")
            continue
        if list(content) != ["application/json"]:
            problems.append(f"{at}: documents {list(content) or 'no body'}, not JSON")
            continue
        schema = content["application/json"].get("schema") or {}
        if not schema:
            problems.append(f"{at}: no schema")
        problems += [f"{at}: {p}" for p in _open_objects(schema, document, "body", set())]
    assert count > 50
    assert not problems, "\n".join(problems)


def test_every_api_operation_answers_something(document):
    missing = [
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if not any(status.startswith("2") for status in operation["responses"])
    ]
    assert not missing


# ---- the models against the dicts the routes send -------------------------------------

NOW = datetime(2026, 11, 26, 7, 30, 0, 123456, tzinfo=UTC)
USER = User(id="usr_1", email="ada@example.com", name="Ada", created_at=NOW)
TEAM = Workspace(id="ws_1", slug="team", name="Team", is_personal=False, created_at=NOW)


def _event(*, actor: bool, prefix: str | None) -> Event:
    return Event(
        seq=1,
        id="01KB0000000000000000000000",
        workspace_id=TEAM.id,
        resource_type=ResourceType.DATASET,
        action=Action.UPLOADED,
        resource_id="ds_1",
        resource_name="cats",
        description="Uploaded dataset cats",
        actor=Actor(id=USER.id, name=USER.name, email=USER.email) if actor else None,
        source=Source(kind=SourceKind.API_KEY if prefix else SourceKind.UI, api_key_prefix=prefix),
        created_at=NOW,
        recorded_at=NOW,
        metadata={"nested": {"any": [1, "thing"]}},
        private_to=None,
    )


VIEWS = [
    EventView(event=_event(actor=True, prefix=None), is_seen=False, is_archived=False),
    EventView(
        event=_event(actor=False, prefix="afk_12345678"),
        is_seen=True,
        is_archived=True,
        is_resource_deleted=True,
        undoable_until=NOW + timedelta(hours=1),
        resource_state=ResourceState.trashed(NOW + timedelta(days=30)),
    ),
    EventView(
        event=_event(actor=True, prefix=None),
        is_seen=True,
        is_archived=False,
        is_resource_deleted=True,
        resource_state=ResourceState.deleted(NOW),
    ),
]


def _resource(*, trashed: bool) -> Resource:
    return Resource(
        id="ds_1",
        workspace_id=TEAM.id,
        kind=ResourceKind.DATASET,
        name="cats",
        description="",
        is_public=False,
        created_by=USER.id,
        created_at=NOW,
        updated_at=NOW,
        trashed_at=NOW if trashed else None,
        purge_after=NOW + timedelta(days=30) if trashed else None,
        deleted_at=None,
        cloned_from="ds_0" if trashed else None,
    )


UPLOAD = Upload(
    id="upl_1",
    resource_id="ds_1",
    workspace_id=TEAM.id,
    filename="cat.png",
    content_type="image/png",
    size_bytes=3,
    sha256="0" * 64,
    blob_key="b",
    created_by=USER.id,
    created_at=NOW,
)


@pytest.mark.parametrize("view", VIEWS, ids=["plain", "key-trashed", "deleted"])
def test_the_event_model_takes_what_event_public_sends(view):
    s.EventPublic.model_validate(s.event_public(view))


def test_the_object_models_take_what_the_public_functions_send():
    membership = Membership(workspace=TEAM, role=Role.ADMIN)
    s.UserPublic.model_validate(s.user_public(USER))
    s.WorkspacePublic.model_validate(s.workspace_public(TEAM))
    s.MembershipPublic.model_validate(s.membership_public(membership))
    s.WorkspaceSummary.model_validate(s.membership_public(membership, unseenCount=2, active=True))
    for used in (None, NOW):
        key = ApiKey(
            id="key_1",
            workspace_id=TEAM.id,
            created_by=USER.id,
            name="runner",
            prefix="afk_12345678",
            scopes=(Scope.EVENTS_WRITE,),
            created_at=NOW,
            last_used_at=used,
            revoked_at=used,
        )
        s.ApiKeyPublic.model_validate(s.api_key_public(key))
    for updated in (None, NOW):
        values = {profiles.NAME: USER.name, **profiles.DEFAULTS}
        profile = Profile(user_id=USER.id, email=USER.email, values=values, updated_at=updated)
        s.ProfilePublic.model_validate(s.profile_public(profile))
    for trashed in (False, True):
        s.ResourcePublic.model_validate(s.resource_public(_resource(trashed=trashed)))
        s.ResourceDetail.model_validate(s.resource_public(_resource(trashed=trashed), [UPLOAD]))
    s.UploadPublic.model_validate(s.upload_public(UPLOAD))


def test_the_models_are_strict():
    """An unknown key, a null where none is sent, a missing key: each is refused."""
    sent = s.event_public(VIEWS[0])
    with pytest.raises(ValidationError):
        s.EventPublic.model_validate({**sent, "extra": 1})
    with pytest.raises(ValidationError):
        s.EventPublic.model_validate({k: v for k, v in sent.items() if k != "undoableUntil"})
    with pytest.raises(ValidationError):
        s.EventPublic.model_validate({**sent, "source": {"kind": "ui", "apiKeyPrefix": None}})
    detail = s.resource_public(_resource(trashed=False), [])
    with pytest.raises(ValidationError):
        s.ResourcePublic.model_validate(detail)
