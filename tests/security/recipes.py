"""How to call every route of the app with the ids it takes: the security tests' route table.

``RECIPES`` has one entry per (method, path template) of ``create_app``'s route table,
pages included. An entry names the ids the request carries (``slots``: slot name → kind
of id) and builds the request from their values. A route with a path parameter must
name it as a slot; a route that takes no id says why (``reason``). Public routes are
listed as ``PUBLIC``. tests/security/test_isolation.py fails on a route without an
entry, and on an entry for a route that is gone, so a new route cannot escape the
matrix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from activityfeed.domain.resources import ResourceKind

#: The kinds of ids: a workspace slug, a resource of one kind, an API key, an event,
#: a person's e-mail address.
WORKSPACE, KEY, EVENT, EMAIL = "workspace", "key", "event", "email"
RESOURCE_KINDS = tuple(k.value for k in ResourceKind)


@dataclass(frozen=True)
class Req:
    """One HTTP request. ``form`` and ``upload`` bodies get the CSRF field when signed in."""

    method: str
    url: str
    params: Mapping[str, str] | None = None
    json: Any = None
    form: Mapping[str, str] | None = None
    upload: bool = False


@dataclass(frozen=True)
class Recipe:
    build: Callable[[Mapping[str, str]], Req]
    #: Slot name → kind of id. Empty: the route takes no id (``reason`` says why).
    slots: Mapping[str, str] = field(default_factory=dict)
    #: The route changes something only a writer (or an owner/admin) may change, so a
    #: viewer of the workspace must get the same answer for every id of it.
    writes: bool = False
    reason: str = ""


#: Public routes serve the same thing to everyone and take no id of ours.
PUBLIC = Recipe(build=lambda _: Req("GET", "/"), reason="public")

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _no_id(reason: str, method: str, url: str, **kw: Any) -> Recipe:
    return Recipe(build=lambda _: Req(method, url, **kw), reason=reason)


def _api_resource_recipes(kind: str) -> dict[tuple[str, str], Recipe]:
    plural = ResourceKind(kind).plural
    base = f"/api/{plural}"
    one = {"resource_id": kind, "ws": WORKSPACE}

    def at(method: str, suffix: str = "", **kw: Any) -> Callable[[Mapping[str, str]], Req]:
        return lambda v: Req(
            method, f"{base}/{v['resource_id']}{suffix}", params={"workspace": v["ws"]}, **kw
        )

    recipes = {
        ("POST", base): Recipe(
            build=lambda v: Req("POST", base, params={"workspace": v["ws"]}, json={"name": "n"}),
            slots={"ws": WORKSPACE},
            writes=True,
        ),
        ("GET", base): Recipe(
            build=lambda v: Req("GET", base, params={"workspace": v["ws"]}),
            slots={"ws": WORKSPACE},
        ),
        ("GET", base + "/{resource_id}"): Recipe(build=at("GET"), slots=one),
        ("PATCH", base + "/{resource_id}"): Recipe(
            build=at("PATCH", json={"name": "renamed"}), slots=one, writes=True
        ),
        ("DELETE", base + "/{resource_id}"): Recipe(build=at("DELETE"), slots=one, writes=True),
        ("POST", base + "/{resource_id}/clone"): Recipe(
            build=lambda v: Req(
                "POST",
                f"{base}/{v['resource_id']}/clone",
                params={"workspace": v["ws"]},
                json={"workspace": v["target"], "name": "copy"},
            ),
            slots={**one, "target": WORKSPACE},
            writes=True,
        ),
        ("POST", base + "/{resource_id}/uploads"): Recipe(
            build=at("POST", "/uploads", upload=True), slots=one, writes=True
        ),
    }
    for action in ("trash", "restore", "share", "unshare"):
        recipes["POST", f"{base}/{{resource_id}}/{action}"] = Recipe(
            build=at("POST", f"/{action}"), slots=one, writes=True
        )
    return recipes


def _page_resource_recipes(kind: str) -> dict[tuple[str, str], Recipe]:
    base = f"/{ResourceKind(kind).plural}"
    one = {"resource_id": kind}

    def form(suffix: str, **fields: str) -> Callable[[Mapping[str, str]], Req]:
        return lambda v: Req("POST", f"{base}/{v['resource_id']}/{suffix}", form=fields)

    recipes = {
        ("GET", base): _no_id("lists the session's active workspace", "GET", base),
        ("POST", base): _no_id(
            "creates in the session's active workspace", "POST", base, form={"name": "n"}
        ),
        ("GET", base + "/{resource_id}"): Recipe(
            build=lambda v: Req("GET", f"{base}/{v['resource_id']}"), slots=one
        ),
        ("POST", base + "/{resource_id}/rename"): Recipe(
            build=form("rename", name="renamed"), slots=one, writes=True
        ),
        ("POST", base + "/{resource_id}/clone"): Recipe(
            build=lambda v: Req(
                "POST",
                f"{base}/{v['resource_id']}/clone",
                form={"workspace": v["target"], "name": "copy"},
            ),
            slots={**one, "target": WORKSPACE},
            writes=True,
        ),
        ("POST", base + "/{resource_id}/upload"): Recipe(
            build=lambda v: Req("POST", f"{base}/{v['resource_id']}/upload", upload=True),
            slots=one,
            writes=True,
        ),
    }
    for action in ("trash", "restore", "delete", "share", "unshare"):
        recipes["POST", f"{base}/{{resource_id}}/{action}"] = Recipe(
            build=form(action), slots=one, writes=True
        )
    return recipes


RECIPES: dict[tuple[str, str], Recipe] = {
    # ---- public: the same for everyone -------------------------------------------------
    ("GET", "/api/openapi.json"): PUBLIC,
    ("GET", "/api/docs"): PUBLIC,
    ("POST", "/api/auth/login"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("GET", "/settings"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("ANY", "/static"): PUBLIC,
    ("ANY", "/api/docs/assets"): PUBLIC,
    # ---- accounts and workspaces -----------------------------------------------------------
    ("POST", "/api/auth/logout"): _no_id(
        "ends the caller's own session", "POST", "/api/auth/logout"
    ),
    ("POST", "/api/auth/password"): _no_id(
        "the caller's own password",
        "POST",
        "/api/auth/password",
        json={"currentPassword": "not the password", "newPassword": "a new password"},
    ),
    ("GET", "/api/auth/me"): _no_id("the caller's own session", "GET", "/api/auth/me"),
    ("GET", "/api/workspaces"): _no_id("the caller's own memberships", "GET", "/api/workspaces"),
    ("POST", "/api/workspaces"): _no_id(
        "creates a new workspace", "POST", "/api/workspaces", json={"name": "New"}
    ),
    ("POST", "/api/workspaces/{slug}/members"): Recipe(
        build=lambda v: Req(
            "POST", f"/api/workspaces/{v['slug']}/members", json={"email": v["email"]}
        ),
        slots={"slug": WORKSPACE, "email": EMAIL},
        writes=True,
    ),
    ("DELETE", "/api/workspaces/{slug}/members/{email}"): Recipe(
        build=lambda v: Req("DELETE", f"/api/workspaces/{v['slug']}/members/{v['email']}"),
        slots={"slug": WORKSPACE, "email": EMAIL},
        writes=True,
    ),
    ("POST", "/api/workspaces/{slug}/switch"): Recipe(
        build=lambda v: Req("POST", f"/api/workspaces/{v['slug']}/switch"),
        slots={"slug": WORKSPACE},
    ),
    # ---- activity ------------------------------------------------------------------------
    ("GET", "/api/activity"): Recipe(
        build=lambda v: Req("GET", "/api/activity", params={"owner": v["owner"]}),
        slots={"owner": WORKSPACE},
    ),
    ("POST", "/api/activity/mark-seen"): Recipe(
        build=lambda v: Req(
            "POST",
            "/api/activity/mark-seen",
            params={"owner": v["owner"]},
            json={"eventIds": [v["ids"]]},
        ),
        slots={"owner": WORKSPACE, "ids": EVENT},
    ),
    ("POST", "/api/activity/archive"): Recipe(
        build=lambda v: Req(
            "POST",
            "/api/activity/archive",
            params={"owner": v["owner"]},
            json={"eventIds": [v["ids"]], "archive": True},
        ),
        slots={"owner": WORKSPACE, "ids": EVENT},
    ),
    ("GET", "/api/activity/stream"): _no_id(
        "the session's active workspace; its Last-Event-ID is covered by the stream's own "
        "isolation tests",
        "GET",
        "/api/activity/stream",
    ),
    ("POST", "/api/activity/{event_id}/undo"): Recipe(
        build=lambda v: Req("POST", f"/api/activity/{v['event_id']}/undo"),
        slots={"event_id": EVENT},
    ),
    # ---- API keys, ingestion, settings, onboarding ---------------------------------------
    ("POST", "/api/api-keys"): Recipe(
        build=lambda v: Req("POST", "/api/api-keys", json={"name": "k", "workspace": v["ws"]}),
        slots={"ws": WORKSPACE},
        writes=True,
    ),
    ("GET", "/api/api-keys"): Recipe(
        build=lambda v: Req("GET", "/api/api-keys", params={"workspace": v["ws"]}),
        slots={"ws": WORKSPACE},
    ),
    ("DELETE", "/api/api-keys/{key_id}"): Recipe(
        build=lambda v: Req("DELETE", f"/api/api-keys/{v['key_id']}"),
        slots={"key_id": KEY},
        writes=True,
    ),
    ("POST", "/api/events"): _no_id(
        "the key decides the workspace; resourceId is the producer's own name",
        "POST",
        "/api/events",
        json={
            "resourceType": "training",
            "action": "started",
            "resourceId": "r",
            "resourceName": "r",
        },
    ),
    ("GET", "/api/settings/profile/export"): _no_id(
        "the caller's own data", "GET", "/api/settings/profile/export"
    ),
    ("GET", "/api/settings/profile"): _no_id(
        "the caller's own profile", "GET", "/api/settings/profile"
    ),
    ("PATCH", "/api/settings/profile"): _no_id(
        "the caller's own profile", "PATCH", "/api/settings/profile", json={"bio": "changed"}
    ),
    ("POST", "/api/onboarding/complete"): _no_id(
        "the caller's own onboarding", "POST", "/api/onboarding/complete"
    ),
    # ---- pages -----------------------------------------------------------------------------
    ("GET", "/activity"): _no_id("the session's active workspace", "GET", "/activity"),
    ("GET", "/activity/rows"): Recipe(
        build=lambda v: Req("GET", "/activity/rows", params={"ids": v["ids"]}),
        slots={"ids": EVENT},
    ),
    ("POST", "/activity/mark-seen"): _no_id(
        "marks all of the session's active workspace", "POST", "/activity/mark-seen", form={}
    ),
    ("POST", "/activity/archive"): Recipe(
        build=lambda v: Req("POST", "/activity/archive", form={"event_id": v["event_id"]}),
        slots={"event_id": EVENT},
    ),
    ("POST", "/activity/switch"): Recipe(
        build=lambda v: Req("POST", "/activity/switch", form={"slug": v["slug"]}),
        slots={"slug": WORKSPACE},
    ),
    ("POST", "/activity/undo"): Recipe(
        build=lambda v: Req("POST", "/activity/undo", form={"event_id": v["event_id"]}),
        slots={"event_id": EVENT},
    ),
    ("POST", "/logout"): _no_id("ends the caller's own session", "POST", "/logout", form={}),
    ("GET", "/settings/profile"): _no_id("the caller's own profile", "GET", "/settings/profile"),
    ("POST", "/settings/profile"): _no_id(
        "the caller's own profile", "POST", "/settings/profile", form={"name": "Changed"}
    ),
    ("POST", "/settings/password"): _no_id(
        "the caller's own password",
        "POST",
        "/settings/password",
        form={"current_password": "not the password", "new_password": "a new password"},
    ),
    ("GET", "/settings/api-keys"): _no_id(
        "the session's active workspace", "GET", "/settings/api-keys"
    ),
    ("POST", "/settings/api-keys"): _no_id(
        "creates in the session's active workspace",
        "POST",
        "/settings/api-keys",
        form={"name": "k"},
    ),
    ("POST", "/settings/api-keys/{key_id}/revoke"): Recipe(
        build=lambda v: Req("POST", f"/settings/api-keys/{v['key_id']}/revoke", form={}),
        slots={"key_id": KEY},
        writes=True,
    ),
}
for _kind in RESOURCE_KINDS:
    RECIPES.update(_api_resource_recipes(_kind))
    RECIPES.update(_page_resource_recipes(_kind))


def path_params(path: str) -> set[str]:
    return set(re.findall(r"{(\w+)(?::\w+)?}", path))


def route_key(methods: frozenset[str], path: str) -> list[tuple[str, str]]:
    """The RECIPES keys of one route (HEAD rides along with GET; a mount is ``ANY``)."""
    named = sorted(methods - {"HEAD"}) or sorted(methods) or ["ANY"]
    return [(m, path) for m in named]
