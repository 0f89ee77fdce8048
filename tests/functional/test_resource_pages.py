"""The projects, datasets and models pages work without JavaScript, and the
deleted-resource note reads right."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from activityfeed.domain.events import ResourceState
from activityfeed.domain.workspaces import Role
from activityfeed.web.pages.resources import resource_state_note
from activityfeed.web.pages.routes import templates
from tests.factories import PASSWORD, Browser, make_team, make_user

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def _sign_in(app, email: str) -> tuple[TestClient, str]:
    browser = TestClient(app, base_url="http://testserver")
    signed = browser.post(
        "/login", data={"email": email, "password": PASSWORD}, follow_redirects=False
    )
    assert signed.status_code == 303
    page = browser.get("/datasets")
    assert page.status_code == 200
    return browser, _csrf(page.text)


def test_state_note_sentences():
    assert (
        resource_state_note(ResourceState.trashed(datetime(2026, 12, 25, 23, 0, tzinfo=UTC)))
        == "In Trash, deleted for good on 2026-12-25"
    )
    assert (
        resource_state_note(ResourceState.deleted(datetime(2026, 11, 25, tzinfo=UTC)))
        == "Permanently deleted on 2026-11-25"
    )
    assert resource_state_note(None) == ""
    rendered = templates.env.from_string("{{ s|resource_state_note }}").render(
        s=ResourceState.deleted(datetime(2026, 1, 2, tzinfo=UTC))
    )
    assert rendered == "Permanently deleted on 2026-01-02"


def test_pages_redirect_to_sign_in(client):
    response = client.get("/models?trash=1", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fmodels%3Ftrash%3D1"


def test_no_javascript_life_cycle(app, db, clock, settings):
    """Create, rename, share, upload, trash, restore, trash and delete through forms."""
    user = make_user(db, clock)
    browser, token = _sign_in(app, user.email)
    created = browser.post(
        "/datasets", data={"csrf_token": token, "name": "cats"}, follow_redirects=False
    )
    assert created.status_code == 303
    url = created.headers["location"]
    rid = url.rsplit("/", 1)[-1]
    page = browser.get(url)
    assert "cats" in page.text
    assert 'enctype="multipart/form-data"' in page.text

    def post(path: str, **data: str) -> int:
        return int(
            browser.post(
                f"/datasets/{rid}/{path}",
                data={"csrf_token": token, **data},
                follow_redirects=False,
            ).status_code
        )

    assert post("rename", name="felines", description="meow") == 303
    assert post("share") == 303
    assert "Public" in browser.get(url).text
    uploaded = browser.post(
        f"/datasets/{rid}/upload",
        data={"csrf_token": token},
        files={"file": ("tabby.png", PNG, "image/png")},
        follow_redirects=False,
    )
    assert uploaded.status_code == 303
    assert "tabby.png" in browser.get(url).text
    wrong = browser.post(
        f"/datasets/{rid}/upload",
        data={"csrf_token": token},
        files={"file": ("notes.txt", b"hi", "text/plain")},
    )
    assert wrong.status_code == 422
    assert "image" in wrong.text
    assert post("trash") == 303
    trash = browser.get("/datasets?trash=1")
    assert "felines" in trash.text
    assert "deleted for good on" in trash.text
    assert "felines" not in browser.get("/datasets").text
    assert post("restore") == 303
    assert "felines" in browser.get("/datasets").text
    assert post("trash") == 303
    assert post("delete") == 303
    assert "felines" not in browser.get("/datasets?trash=1").text
    assert browser.get(url).status_code == 404
    assert not any(p.is_file() for p in (settings.data_dir / "uploads").rglob("*"))

    api = Browser(app, user.email)
    actions = [
        e["action"] for e in reversed(api.activity(limit=100)["events"]) if e["resourceId"] == rid
    ]
    assert actions == [
        "created",
        "updated",
        "shared",
        "uploaded",
        "trashed",
        "restored",
        "trashed",
        "deleted",
    ]


def test_pages_refuse_without_token_and_show_errors(app, db, clock):
    owner = make_user(db, clock)
    viewer = make_user(db, clock)
    team = make_team(db, clock, owner, [(viewer, Role.VIEWER)])
    browser, token = _sign_in(app, viewer.email)
    browser.post("/activity/switch", data={"csrf_token": token, "slug": team.slug})
    no_token = browser.post("/projects", data={"name": "x"}, follow_redirects=False)
    assert no_token.status_code == 403
    page = browser.get("/projects")
    assert "viewer" in page.text
    assert 'action="/projects"' not in page.text
    refused = browser.post("/projects", data={"csrf_token": token, "name": "x"})
    assert refused.status_code == 403
    assert "Viewers" in refused.text
    missing = browser.get("/projects/prj_nope")
    assert missing.status_code == 404


def test_page_upload_over_the_limit_leaves_nothing(settings, db, clock):
    from dataclasses import replace

    from activityfeed.web import create_app

    app = create_app(replace(settings, max_upload_bytes=64), db=db, clock=clock)
    user = make_user(db, clock)
    browser, token = _sign_in(app, user.email)
    created = browser.post(
        "/models", data={"csrf_token": token, "name": "m"}, follow_redirects=False
    )
    rid = created.headers["location"].rsplit("/", 1)[-1]
    refused = browser.post(
        f"/models/{rid}/upload",
        data={"csrf_token": token},
        files={"file": ("w.bin", b"\x00" * 1000, "application/octet-stream")},
    )
    assert refused.status_code == 413
    assert "upload limit" in refused.text
    no_token = browser.post(
        f"/models/{rid}/upload", files={"file": ("w.bin", b"\x00", "application/octet-stream")}
    )
    assert no_token.status_code == 403
    root = settings.data_dir / "uploads"
    assert not any(p.is_file() for p in root.rglob("*"))
    assert "w.bin" not in browser.get(f"/models/{rid}").text
