"""``activityfeed user create``, ``workspace create``, ``apikey create``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from activityfeed.cli.common import DatabaseUrl, console, friendly_errors, now, settings_for
from activityfeed.domain.accounts import Scope
from activityfeed.domain.events import SourceKind
from activityfeed.domain.workspaces import Role
from activityfeed.errors import InvalidRequest, NotFound
from activityfeed.services import accounts, apikeys, workspaces
from activityfeed.store import accounts as account_store
from activityfeed.store import migrate
from activityfeed.store.db import Database

user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
workspace_app = typer.Typer(help="Manage workspaces.", no_args_is_help=True)
apikey_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


@contextmanager
def _db(database_url: str | None) -> Iterator[Database]:
    """The database, migrated, with its connections closed when the command ends."""
    settings = settings_for(database_url)
    migrate.upgrade(settings.database_url)
    db = Database(settings.database_url)
    try:
        yield db
    finally:
        db.dispose()


@user_app.command("create")
def user_create(
    email: str = typer.Option(..., "--email"),
    name: str = typer.Option(..., "--name"),
    password: str = typer.Option(..., "--password", help="At least 8 characters."),
    database_url: str | None = DatabaseUrl,
) -> None:
    """Create a user and their personal workspace."""
    with _db(database_url) as db, friendly_errors(), db.write() as tx:
        user = accounts.create_user(tx, email=email, name=name, password=password, now=now())
        ws = account_store.select_personal_workspace(tx, user.id)
    console.print(f"Created user {user.email} (id {user.id}), workspace '{ws.slug if ws else ''}'.")


def _user_id(tx: object, email: str) -> str:
    found = account_store.select_user_by_email(tx, accounts.normalise_email(email))  # type: ignore[arg-type]  # Tx
    if found is None:
        raise NotFound(f"No user has the e-mail {email}.")
    return found[0].id


@workspace_app.command("create")
def workspace_create(
    name: str = typer.Option(..., "--name"),
    owner: str = typer.Option(..., "--owner", help="The owner's e-mail."),
    member: list[str] = typer.Option(
        [], "--member", help="EMAIL[:ROLE] to add (role: admin, member, viewer). Repeatable."
    ),
    database_url: str | None = DatabaseUrl,
) -> None:
    """Create a team workspace owned by a user, optionally with members."""
    with _db(database_url) as db, friendly_errors(), db.write() as tx:
        owner_id = _user_id(tx, owner)
        ws = workspaces.create_workspace(tx, user_id=owner_id, name=name, now=now())
        for item in member:
            email, _, role = item.partition(":")
            if role and role not in {r.value for r in Role}:
                raise InvalidRequest(
                    f"--member {item!r}: the role must be one of "
                    f"{', '.join(r.value for r in Role)}.",
                    field="member",
                )
            workspaces.add_member(
                tx,
                user_id=owner_id,
                slug=ws.slug,
                email=email,
                role=Role(role or "member"),
                now=now(),
            )
    console.print(f"Created workspace '{ws.slug}'.")


@apikey_app.command("create")
def apikey_create(
    email: str = typer.Option(..., "--email", help="The user the key is made for."),
    name: str = typer.Option(..., "--name"),
    workspace: str | None = typer.Option(
        None, "--workspace", help="Workspace slug; default: the user's personal workspace."
    ),
    database_url: str | None = DatabaseUrl,
) -> None:
    """Create an API key with events:write and print its secret (shown only once)."""
    with _db(database_url) as db, friendly_errors(), db.write() as tx:
        user_id = _user_id(tx, email)
        user = account_store.select_user(tx, user_id)
        assert user is not None
        if workspace:
            membership = workspaces.access_workspace(tx, user_id=user_id, slug=workspace)
        else:
            personal = account_store.select_personal_workspace(tx, user_id)
            assert personal is not None
            membership = workspaces.access_workspace(tx, user_id=user_id, workspace_id=personal.id)
        created = apikeys.create_api_key(
            tx,
            user=user,
            membership=membership,
            name=name,
            scopes=[Scope.EVENTS_WRITE],
            source=SourceKind.CLI,
            now=now(),
        )
    console.print(created.secret, soft_wrap=True, highlight=False)
