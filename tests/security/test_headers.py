"""Security headers on every kind of answer, HSTS only over HTTPS, and user text
escaped on every page. (The same pages in a real browser: tests/e2e/test_browser_xss.py.)
"""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient

from activityfeed.domain.workspaces import Role
from activityfeed.web import create_app
from tests.factories import PASSWORD, Browser, ingest, make_key, make_team, make_user
from tests.security._hardening import World, make_world, route_table

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"onmouseover="alert(1)'
IMG = "<img src=x onerror=alert(1)>"
PAYLOADS = (SCRIPT, ATTRIBUTE, IMG)


def csp(response: Any) -> dict[str, list[str]]:
    header = response.headers["content-security-policy"]
    out: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def assert_hardened(response: Any, what: str, *, https: bool = False) -> None:
    h = response.headers
    policy = csp(response)
    script_src = policy.get("script-src", policy.get("default-src"))
    assert script_src is not None, what
    assert "'unsafe-inline'" not in script_src, what
    assert "'unsafe-eval'" not in script_src, what
    assert policy["object-src"] == ["'none'"], what
    assert policy["base-uri"] == ["'none'"], what
    assert policy["frame-ancestors"] == ["'none'"], what
    assert h["x-content-type-options"] == "nosniff", what
    assert h["referrer-policy"] in ("same-origin", "no-referrer", "strict-origin-when-cross-origin")
    assert h["x-frame-options"] == "DENY", what
    if https:
        assert h["strict-transport-security"].startswith("max-age="), what
        assert int(h["strict-transport-security"].split("=")[1].split(";")[0]) >= 15552000
    else:
        assert "strict-transport-security" not in h, what


def _every_kind_of_answer(app: Any, world: World, base: str) -> dict[str, Any]:
    b = world.browser
    with TestClient(app, base_url=base, raise_server_exceptions=False) as anonymous:
        limited = "x" * (app.state.settings.max_body_bytes + 1)
        for _ in range(11):
            anonymous.post("/api/auth/login", json={"email": "x@example.com", "password": "no"})
        return {
            "api-200": b.get("/api/activity"),
            "api-401": anonymous.get("/api/activity"),
            "api-403": b.client.post("/api/activity/mark-seen", json={"all": True}),
            "api-404": b.get("/api/projects/p_unknown"),
            "api-404-route": anonymous.get("/api/nothing-here"),
            "api-405": anonymous.put("/api/activity"),
            "api-413": anonymous.post("/api/auth/login", content=limited),
            "api-422": b.get("/api/activity", params={"limit": 0}),
            "api-429": anonymous.post(
                "/api/auth/login", json={"email": "x@example.com", "password": "no"}
            ),
            "api-500": anonymous.get("/api/boom"),
            "openapi": anonymous.get("/api/openapi.json"),
            "api-docs": anonymous.get("/api/docs"),
            "api-docs-asset": anonymous.get("/api/docs/assets/swagger-ui-bundle.js"),
            "page": b.get("/activity"),
            "page-422": b.get("/activity", params={"limit": 0}),
            "page-404": b.get("/projects/p_unknown"),
            "page-redirect": anonymous.get("/activity", follow_redirects=False),
            "login-page": anonymous.get("/login"),
            "unknown-page": anonymous.get("/no/such/page"),
            "static": anonymous.get("/static/activity.js"),
            "static-404": anonymous.get("/static/nothing.js"),
            "healthz": anonymous.get("/healthz"),
            "export": b.get("/api/activity", params={"export": "true"}),
        }


def https_browser(app: Any, email: str) -> Browser:
    """A signed-in Browser whose requests come over HTTPS (so its cookie is __Host-)."""
    browser = Browser.__new__(Browser)
    browser.client = TestClient(app, base_url="https://testserver")
    response = browser.client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    browser.login = response.json()
    browser.csrf = browser.login["csrfToken"]
    return browser


def _with_boom(app: Any) -> Any:
    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/api/boom", boom)
    return app


@pytest.mark.parametrize("backend", ["sqlite"])  # no database behaviour here
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_every_kind_of_answer_carries_the_headers(settings, db, clock, scheme):
    """API JSON, errors of every status (401, 403, 404, 405, 413 from the body limit, 422,
    429, an unhandled 500), pages, redirects, static files, the OpenAPI document, the
    health check and the export: each has the CSP (no inline or eval scripts,
    object-src, base-uri and frame-ancestors 'none'), nosniff, a Referrer-Policy and
    X-Frame-Options; HSTS exactly when the request came over HTTPS."""
    app = _with_boom(create_app(settings, db=db, clock=clock))
    world = make_world(app, db, clock)
    base = f"{scheme}://testserver"
    if scheme == "https":
        world.browser = https_browser(app, world.owner.email)
    answers = _every_kind_of_answer(app, world, base)
    statuses = {name: r.status_code for name, r in answers.items()}
    assert statuses["api-500"] == 500
    assert statuses["api-413"] == 413
    assert statuses["api-429"] == 429
    for name, response in answers.items():
        assert_hardened(response, name, https=scheme == "https")


@pytest.mark.parametrize("backend", ["sqlite"])  # no database behaviour here
def test_the_api_reference_page_is_whole_on_this_origin(settings, db, clock):
    """``/api/docs`` names only same-origin scripts and stylesheets, each served (Swagger
    UI's own files and our starter), and holds no inline script: the CSP lets it run, and
    it needs no network beyond this server."""
    app = create_app(settings, db=db, clock=clock)
    with TestClient(app) as anonymous:
        page = anonymous.get("/api/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
        assert scripts
        assert all(body.strip() == "" for _, body in scripts)
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert {u.rsplit(".", 1)[-1] for u in urls} >= {"js", "css"}
        for url in urls:
            assert url.startswith("/"), url
            assert not url.startswith("//"), url
            got = anonymous.get(url)
            assert got.status_code == 200, url
            kinds = {"js": "javascript", "css": "text/css", "svg": "image/svg"}
            kind = kinds[url.rsplit(".", 1)[-1]]
            assert kind in got.headers["content-type"], url
        assert anonymous.get("/api/docs/assets/nothing.js").status_code == 404


@pytest.mark.parametrize("backend", ["sqlite"])  # no database behaviour here
def test_hsts_when_the_operator_says_https(settings, db, clock):
    """Behind a proxy that does not forward the scheme, ACTIVITYFEED_COOKIE_SECURE (the
    operator's word that the site is HTTPS) turns HSTS on for every answer."""
    app = create_app(dataclasses.replace(settings, cookie_secure=True), db=db, clock=clock)
    with TestClient(app, base_url="http://testserver") as client:
        for url in ("/login", "/api/activity", "/static/style.css", "/nothing"):
            assert "max-age=" in client.get(url).headers["strict-transport-security"], url


# ---- user text is escaped on every page ------------------------------------------------


class _Markup(HTMLParser):
    """Collects what an injection would add: event-handler attributes and inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, _ in attrs:
            if name.lower().startswith("on"):
                self.problems.append(f"<{tag} {name}=...>")
        if tag == "script":
            if not dict(attrs).get("src"):
                self.problems.append("<script> without src")
            self._in_script = True
        if tag in ("iframe", "object", "embed", "base"):
            self.problems.append(f"<{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script content")


def hostile_world(app: Any, db: Any, clock: Any) -> World:
    """A world where every text a person or producer can choose is an injection."""
    world = make_world(app, db, clock)
    b = world.browser
    # The actor's name (shown on rows and in the sidebar) and a team's name.
    evil = make_user(db, clock, name=SCRIPT + ATTRIBUTE)
    team = make_team(db, clock, evil, [(world.owner, Role.MEMBER)], name=SCRIPT + ATTRIBUTE)
    secret = make_key(db, clock, evil, team)
    ingest(
        TestClient(app),
        world.secret,
        {
            "resourceType": "project",
            "action": "created",
            "resourceId": SCRIPT,
            "resourceName": SCRIPT + ATTRIBUTE,
            "description": IMG + ATTRIBUTE,
            "metadata": {IMG: SCRIPT, "nested": {"x": "</code>" + SCRIPT, ATTRIBUTE: [IMG]}},
        },
    )
    ingest(
        TestClient(app),
        secret,
        {"resourceType": "model", "action": "created", "resourceId": "m", "resourceName": IMG},
    )
    for kind in ("projects", "datasets", "models"):
        made = b.post(f"/api/{kind}", json={"name": SCRIPT, "description": ATTRIBUTE + IMG})
        assert made.status_code == 201, made.text
        world.resources[kind] = next(iter(made.json().values()))["id"]
    upload = b.client.post(
        f"/api/datasets/{world.resources['datasets']}/uploads",
        files={"file": (IMG + ".png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png")},
        headers={"X-CSRF-Token": b.csrf},
    )
    assert upload.status_code == 201, upload.text
    assert b.post("/api/api-keys", json={"name": SCRIPT + ATTRIBUTE}).status_code == 201
    profile = {"name": SCRIPT, "bio": ATTRIBUTE + IMG, "company": SCRIPT}
    assert b.patch("/api/settings/profile", json=profile).status_code == 200
    return world


@pytest.mark.parametrize("backend", ["sqlite"])  # no database behaviour here
def test_user_text_is_escaped_on_every_page(app, db, clock):
    """Names, descriptions, metadata keys and values, file names, key names and profile
    text set to ``<script>``, ``<img onerror>`` and ``"onmouseover=`` show as text on
    every page of the route table: the raw markup never appears, and the HTML has no
    event-handler attribute, inline script, frame or base element."""
    world = hostile_world(app, db, clock)
    b = world.browser
    pages = [
        p for m, p in route_table(app) if m == "GET" and not p.startswith(("/api/", "/static"))
    ]
    urls = [world.url(p) for p in pages]
    urls += [
        "/activity?search=" + SCRIPT,
        "/activity?limit=" + ATTRIBUTE,
        f"/activity/rows?ids={world.event_id}",
        "/projects?trash=1",
        "/login?next=" + ATTRIBUTE,
    ]
    shown = 0
    for url in urls:
        response = b.client.get(url)
        assert response.status_code < 500, url
        html = response.text
        for payload in PAYLOADS:
            assert payload not in html, (url, payload)
        parser = _Markup()
        parser.feed(html)
        assert parser.problems == [], (url, parser.problems)
        shown += html.count("&lt;script&gt;alert(1)&lt;/script&gt;")
    assert shown > 10  # the payloads were on the pages, as text
    # The sign-in form shows back what was typed, escaped too.
    with TestClient(app, base_url="http://testserver") as anonymous:
        failed = anonymous.post("/login", data={"email": ATTRIBUTE + SCRIPT, "password": "x"})
        assert SCRIPT not in failed.text
        assert ATTRIBUTE not in failed.text
