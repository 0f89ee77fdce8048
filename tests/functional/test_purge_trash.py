"""`activityfeed purge-trash` deletes what has been in Trash for 30 days, as the system."""

from __future__ import annotations

from typer.testing import CliRunner

from activityfeed.cli.main import app as cli
from tests.factories import Browser, make_user

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def test_purge_trash_deletes_only_what_is_due(app, db, clock, settings, database_url):
    user = make_user(db, clock)
    b = Browser(app, user.email)

    def make(name: str) -> str:
        response = b.post("/api/datasets", json={"name": name})
        assert response.status_code == 201
        return str(response.json()["dataset"]["id"])

    # Trashed 31 days ago (the app's clock is moved back), 29 days ago, and not at all.
    clock.advance(days=-31)
    old = make("old")
    b.client.post(
        f"/api/datasets/{old}/uploads",
        files={"file": ("a.png", PNG, "image/png")},
        headers={"X-CSRF-Token": b.csrf},
    )
    b.post(f"/api/datasets/{old}/trash")
    clock.advance(days=2)
    recent = make("recent")
    b.post(f"/api/datasets/{recent}/trash")
    clock.advance(days=29)
    kept = make("kept")
    blobs = settings.data_dir / "uploads" / "blobs"
    assert len(list(blobs.iterdir())) == 1

    result = runner.invoke(
        cli,
        ["purge-trash", "--database-url", database_url, "--data-dir", str(settings.data_dir)],
    )
    assert result.exit_code == 0, result.output
    assert "Deleted 1 resource from Trash." in result.output
    assert b.get(f"/api/datasets/{old}").status_code == 404
    assert b.get(f"/api/datasets/{recent}").json()["dataset"]["status"] == "trashed"
    assert b.get(f"/api/datasets/{kept}").json()["dataset"]["status"] == "active"
    assert list(blobs.iterdir()) == []

    feed = b.activity(limit=100, start="2000-01-01")
    events = [e for e in reversed(feed["events"]) if e["resourceId"] == old]
    assert [e["action"] for e in events] == ["created", "uploaded", "trashed", "deleted"]
    deleted = events[-1]
    assert deleted["actor"] is None
    assert deleted["source"] == {"kind": "system"}
    assert deleted["description"] == "Deleted dataset old after 30 days in Trash"
    assert all(e["resourceState"]["status"] == "deleted" for e in events)

    again = runner.invoke(
        cli,
        ["purge-trash", "--database-url", database_url, "--data-dir", str(settings.data_dir)],
    )
    assert again.exit_code == 0
    assert "Deleted 0 resources" in again.output
