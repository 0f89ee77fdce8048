"""Users and browser sessions: create, sign in, resolve, switch workspace, sign out."""

from __future__ import annotations

import math
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from activityfeed.config import Settings
from activityfeed.domain.accounts import Membership, Session, User, Workspace
from activityfeed.domain.events import Action, Actor, EventDraft, ResourceType, Source, SourceKind
from activityfeed.domain.ids import digest, new_id, new_secret
from activityfeed.domain.state import MarksAndHead
from activityfeed.domain.workspaces import Role, slugify
from activityfeed.errors import Conflict, InvalidRequest, NotAuthenticated, TooManyRequests
from activityfeed.services import passwords
from activityfeed.services.events import record_event
from activityfeed.store import accounts as store
from activityfeed.store import states as state_store
from activityfeed.store.db import Tx

MAX_EMAIL = 320
#: Session cookie values are 43 characters; anything much longer is not ours.
MAX_COOKIE = 256


def is_storable(text: str) -> bool:
    """False for text no database here can store: NUL (PostgreSQL) or lone surrogates."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_name(value: str, *, field: str, max_length: int, what: str) -> str:
    """A trimmed display name of 1 to ``max_length`` characters without control characters.

    Raises ``InvalidRequest`` naming ``field`` otherwise.
    """
    name = value.strip()
    if (
        not name
        or len(name) > max_length
        or not is_storable(name)
        or any(unicodedata.category(ch) == "Cc" for ch in name)
    ):
        raise InvalidRequest(
            f"{what} of 1 to {max_length} characters, without control characters, is needed.",
            field=field,
        )
    return name


def normalise_email(email: str) -> str:
    """Lower-cased and trimmed; raises ``InvalidRequest`` when it is plainly not an address."""
    value = email.strip().lower()
    local, at, domain = value.partition("@")
    if (
        not at
        or not local
        or "." not in domain
        or len(value) > MAX_EMAIL
        or not is_storable(value)
        or "\ufffd" in value
        or any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value)
    ):
        raise InvalidRequest(f"{email[:80]!r} is not an e-mail address.", field="email")
    return value


def _email_key(email: str) -> str:
    """The e-mail as sign-in looks it up and counts failures under.

    Text that cannot be stored is replaced (not refused) so that such an attempt is a
    plain failed sign-in, counted like any other, and never matches a real account.
    """
    key = email.strip().lower()[:MAX_EMAIL]
    if is_storable(key):
        return key
    return "".join("\ufffd" if ch == "\x00" or 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in key)


def unique_slug(tx: Tx, base: str) -> str:
    slug = slugify(base)
    candidate, n = slug, 1
    while store.slug_taken(tx, candidate):
        n += 1
        candidate = f"{slug}-{n}"
    return candidate


def create_user(tx: Tx, *, email: str, name: str, password: str, now: datetime) -> User:
    """Create a user and their personal workspace (they are its owner).

    Raises ``Conflict`` (``already_exists``) when the e-mail is taken.
    """
    email = normalise_email(email)
    name = clean_name(name, field="name", max_length=200, what="A name")
    if not passwords.MIN_LENGTH <= len(password) <= passwords.MAX_LENGTH:
        raise InvalidRequest(
            f"The password must have {passwords.MIN_LENGTH} to {passwords.MAX_LENGTH} characters.",
            field="password",
        )
    if store.select_user_by_email(tx, email) is not None:
        raise Conflict(f"A user with the e-mail {email} exists already.", code="already_exists")
    user = User(id=new_id("u_"), email=email, name=name, created_at=now)
    store.insert_user(tx, user=user, password_hash=passwords.hash_password(password))
    workspace = Workspace(
        id=new_id("w_"),
        slug=unique_slug(tx, email.partition("@")[0]),
        name=name,
        is_personal=True,
        created_at=now,
    )
    store.insert_workspace(tx, workspace)
    store.insert_membership(tx, workspace_id=workspace.id, user_id=user.id, role=Role.OWNER, at=now)
    return user


@dataclass(frozen=True, slots=True)
class SignIn:
    """A new session: the cookie value (shown once) and what the login answer carries."""

    cookie_value: str
    session: Session
    workspace: Workspace


@dataclass(frozen=True, slots=True)
class PasswordChanged:
    """A changed password: how many other sessions ended, and this browser's new cookie
    value (its session id was rotated; shown once)."""

    ended_sessions: int
    cookie_value: str


def _check_rate(tx: Tx, *, email: str, address: str, now: datetime, settings: Settings) -> None:
    since = now - timedelta(seconds=settings.login_window_seconds)
    for count, oldest, limit in (
        (
            *store.count_login_failures(tx, since=since, email=email),
            settings.login_max_failures_per_account,
        ),
        (
            *store.count_login_failures(tx, since=since, address=address),
            settings.login_max_failures_per_address,
        ),
    ):
        if count >= limit and oldest is not None:
            wait = (oldest + timedelta(seconds=settings.login_window_seconds)) - now
            raise TooManyRequests(
                "Too many failed sign-in attempts; wait a few minutes and try again.",
                # Rounded up: at that moment the oldest failure has left the window.
                retry_after=math.ceil(wait.total_seconds()),
            )


def sign_in(
    tx: Tx,
    *,
    email: str,
    password: str,
    address: str,
    now: datetime,
    settings: Settings,
    replaces: str | None = None,
) -> SignIn:
    """Check the credentials and open a new session in the user's personal workspace.

    ``replaces`` is the session cookie the browser sent with the sign-in, if any: that
    session ends, since the browser is about to forget its id for the new one.

    Raises ``TooManyRequests`` after too many recent failures for the account or the
    address (checked before the password, so a correct guess does not get through),
    and ``NotAuthenticated`` (``invalid_credentials``) for a wrong e-mail or password.
    The failure is recorded by the caller in its own transaction (``record_failure``),
    so that it survives the rollback of this one.
    """
    email_key = _email_key(email)
    _check_rate(tx, email=email_key, address=address, now=now, settings=settings)
    found = store.select_user_by_email(tx, email_key)
    if not passwords.verify_password(found[1] if found else None, password) or found is None:
        raise NotAuthenticated("The e-mail or password is wrong.", code="invalid_credentials")
    user, password_hash = found
    if passwords.needs_rehash(password_hash):
        store.update_password_hash(tx, user.id, passwords.hash_password(password))
    # Forget this address's failures for the account (the owner's own typos), but not
    # those from elsewhere: a guesser's count must not reset when the owner signs in.
    store.delete_login_failures(tx, email=email_key, address=address)
    workspace = store.select_personal_workspace(tx, user.id)
    assert workspace is not None, "every user has a personal workspace"
    if replaces and len(replaces) <= MAX_COOKIE:
        store.end_session(tx, digest(replaces), now)
    # A fresh id at every sign-in: a session id planted before login is worthless.
    cookie_value = new_secret(32)
    id_hash = digest(cookie_value)
    csrf_token = secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=settings.session_absolute_seconds)
    store.insert_session(
        tx,
        id_hash=id_hash,
        user_id=user.id,
        workspace_id=workspace.id,
        csrf_token=csrf_token,
        at=now,
        expires_at=expires_at,
    )
    session = Session(
        id_hash=id_hash,
        user=user,
        workspace_id=workspace.id,
        csrf_token=csrf_token,
        created_at=now,
        last_seen_at=now,
        expires_at=expires_at,
    )
    return SignIn(cookie_value=cookie_value, session=session, workspace=workspace)


def record_failure(tx: Tx, *, email: str, address: str, now: datetime, settings: Settings) -> None:
    store.insert_login_failure(tx, email=_email_key(email), address=address, at=now)
    # Old failures never matter again; pruning here keeps the table small.
    store.prune_login_failures(
        tx, before=now - timedelta(seconds=settings.login_window_seconds * 4)
    )


#: Refresh ``last_seen_at`` at most this often, so reads stay reads most of the time.
TOUCH_EVERY = timedelta(minutes=1)


def resolve_session(
    tx: Tx, cookie_value: str, *, now: datetime, settings: Settings
) -> Session | None:
    """The live session behind a cookie value, or None (ended, expired, idle, unknown)."""
    if not cookie_value or len(cookie_value) > MAX_COOKIE:
        return None
    idle_since = now - timedelta(seconds=settings.session_idle_seconds)
    return store.select_live_session(tx, digest(cookie_value), now=now, idle_since=idle_since)


def resolve_session_for_feed(
    tx: Tx, cookie_value: str, *, now: datetime, settings: Settings
) -> tuple[Session, Membership | None, MarksAndHead | None] | None:
    """``resolve_session``, the user's membership of the session's active workspace (None
    when they no longer belong to it), and their watermarks there with the workspace's
    head (for ``activity.list_activity``), read together in one statement."""
    if not cookie_value or len(cookie_value) > MAX_COOKIE:
        return None
    idle_since = now - timedelta(seconds=settings.session_idle_seconds)
    return state_store.select_live_session_for_feed(
        tx, digest(cookie_value), now=now, idle_since=idle_since
    )


def touch_session(tx: Tx, session: Session, *, now: datetime) -> None:
    if now - session.last_seen_at >= TOUCH_EVERY:
        store.touch_session(tx, session.id_hash, now)


def sign_out(tx: Tx, session: Session, *, now: datetime) -> None:
    """End this session (only this one) on the server, at once."""
    store.end_session(tx, session.id_hash, now)


def change_password(
    tx: Tx,
    session: Session,
    *,
    current_password: str,
    new_password: str,
    address: str,
    now: datetime,
    settings: Settings,
) -> PasswordChanged:
    """Set a new password and end every other session of the user.

    The calling browser stays signed in under a new session id (the old one ends like
    the others: a copy of this browser's cookie taken before the change is worthless);
    the new session keeps the workspace, CSRF token and absolute expiry of the old one.
    Every other browser (perhaps a thief's) must sign in again with the new password.
    Records a ``settings`` ``updated`` event (no secret in it, and nothing undo could
    replay). The current password is checked under the sign-in rate limit:
    ``TooManyRequests`` after too many failures, and ``InvalidRequest`` naming
    ``currentPassword`` when it is wrong (the caller records that failure in its own
    transaction, as for sign-in).
    """
    user = session.user
    _check_rate(tx, email=user.email, address=address, now=now, settings=settings)
    found = store.select_user_by_email(tx, user.email)
    if found is None or not passwords.verify_password(found[1], current_password):
        raise InvalidRequest("The current password is wrong.", field="currentPassword")
    if not passwords.MIN_LENGTH <= len(new_password) <= passwords.MAX_LENGTH:
        raise InvalidRequest(
            f"The password must have {passwords.MIN_LENGTH} to {passwords.MAX_LENGTH} characters.",
            field="newPassword",
        )
    store.update_password_hash(tx, user.id, passwords.hash_password(new_password))
    ended = store.end_user_sessions(tx, user.id, now, keep=session.id_hash)
    store.end_session(tx, session.id_hash, now)
    cookie_value = new_secret(32)
    store.insert_session(
        tx,
        id_hash=digest(cookie_value),
        user_id=user.id,
        workspace_id=session.workspace_id,
        csrf_token=session.csrf_token,
        at=now,
        expires_at=session.expires_at,
    )
    workspace = store.select_personal_workspace(tx, user.id)
    assert workspace is not None, "every user has a personal workspace"
    record_event(
        tx,
        EventDraft(
            workspace_id=workspace.id,
            resource_type=ResourceType.SETTINGS,
            action=Action.UPDATED,
            resource_id=user.id,
            resource_name="password",
            actor=Actor(id=user.id, name=user.name, email=user.email),
            source=Source(kind=SourceKind.UI),
            description="Changed the password",
            metadata={"passwordChanged": True, "endedSessions": ended},
        ),
        now=now,
    )
    return PasswordChanged(ended_sessions=ended, cookie_value=cookie_value)


def memberships(tx: Tx, user_id: str) -> list[Membership]:
    return store.select_memberships(tx, user_id)
