"""The fixed command-line forms of PRODUCT.md, for scripts and operators."""

from __future__ import annotations

from typer.testing import CliRunner

from activityfeed.cli.demo import DEMO_EMAIL, DEMO_PASSWORD, TEAM_NAME, seed_demo
from activityfeed.cli.main import app as cli
from activityfeed.services.settings import get_profile
from activityfeed.store import accounts as account_store
from activityfeed.store import events as event_store
from activityfeed.store import resources as resource_store
from tests.factories import Browser, event_body, ingest

runner = CliRunner()


def test_user_create_then_sign_in(database_url, app, db):
    """`user create` makes the user and a personal workspace; they can sign in."""
    result = runner.invoke(
        cli,
        [
            "user",
            "create",
            "--email",
            "Ops@Example.com",
            "--name",
            "Ops",
            "--password",
            "s3cret-pass",
            "--database-url",
            database_url,
        ],
    )
    assert result.exit_code == 0, result.output
    with db.read() as tx:
        found = account_store.select_user_by_email(tx, "ops@example.com")
        assert found is not None
        assert account_store.select_personal_workspace(tx, found[0].id) is not None
    browser = Browser(app, "ops@example.com", "s3cret-pass")
    assert browser.login["workspace"]["isPersonal"] is True


def test_user_create_twice_is_a_clear_error(database_url):
    args = [
        "user",
        "create",
        "--email",
        "a@example.com",
        "--name",
        "A",
        "--password",
        "s3cret-pass",
        "--database-url",
        database_url,
    ]
    assert runner.invoke(cli, args).exit_code == 0
    again = runner.invoke(cli, args)
    assert again.exit_code == 1
    assert "already_exists" in again.output


def test_workspace_and_apikey_create(database_url, client):
    """A team made on the command line gets a key that ingests into it."""
    for email in ("owner@example.com", "mate@example.com"):
        runner.invoke(
            cli,
            [
                "user",
                "create",
                "--email",
                email,
                "--name",
                email[:4],
                "--password",
                "s3cret-pass",
                "--database-url",
                database_url,
            ],
        )
    made = runner.invoke(
        cli,
        [
            "workspace",
            "create",
            "--name",
            "Robotics",
            "--owner",
            "owner@example.com",
            "--member",
            "mate@example.com:viewer",
            "--database-url",
            database_url,
        ],
    )
    assert made.exit_code == 0, made.output
    key = runner.invoke(
        cli,
        [
            "apikey",
            "create",
            "--email",
            "owner@example.com",
            "--name",
            "runner",
            "--workspace",
            "robotics",
            "--database-url",
            database_url,
        ],
    )
    assert key.exit_code == 0, key.output
    secret = key.output.strip().splitlines()[-1]
    assert secret.startswith("afk_")
    response = ingest(client, secret, event_body())
    assert response.status_code == 201, response.text


def test_demo_seeds_once(tmp_path, app):
    """The demo's data is made once; a second run leaves it as it was."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert seed_demo(url, events=300) is True
    assert seed_demo(url, events=300) is False
    from activityfeed.store.db import Database

    db = Database(url)
    with db.read() as tx:
        user = account_store.select_user_by_email(tx, DEMO_EMAIL)
        assert user is not None
        team = next(
            m
            for m in account_store.select_memberships(tx, user[0].id)
            if m.workspace.name == TEAM_NAME
        )
        # The history, plus the platform's own events: 3 created, 1 trashed, 1 deleted.
        assert 255 <= event_store.select_head(tx, team.workspace.id)[1] <= 305
        assert len(account_store.select_member_ids(tx, team.workspace.id)) == 2
        made = resource_store.select_resources_after(
            tx, workspace_id=team.workspace.id, after_id="", limit=10
        )
        assert sorted(r.status.value for r in made) == ["active", "deleted", "trashed"]
        assert get_profile(tx, user_id=user[0].id).values["timezone"] == "Europe/Paris"
    db.dispose()
    assert DEMO_PASSWORD


def test_workspace_create_with_a_bad_role_is_a_clear_error(database_url):
    runner.invoke(
        cli,
        [
            "user",
            "create",
            "--email",
            "o@example.com",
            "--name",
            "O",
            "--password",
            "s3cret-pass",
            "--database-url",
            database_url,
        ],
    )
    result = runner.invoke(
        cli,
        [
            "workspace",
            "create",
            "--name",
            "T",
            "--owner",
            "o@example.com",
            "--member",
            "o@example.com:boss",
            "--database-url",
            database_url,
        ],
    )
    assert result.exit_code == 1
    assert "the role must be one of" in result.output
