"""One error hierarchy for the whole service.

Every error a person can meet has a snake_case ``code`` and a ``message`` that is a
sentence for a person. The web layer turns them into
``{"error": {"code", "message"}}`` with ``status``; the CLI prints the message.

    AppError
    ├── InvalidRequest (422)        invalid_request, type_not_ingestible,
    │                               idempotency_key_reused
    ├── NotAuthenticated (401)      not_authenticated, browser_session_required,
    │                               invalid_credentials, invalid_api_key
    ├── Forbidden (403)             forbidden, csrf_failed
    ├── NotFound (404)              not_found (missing and foreign look the same)
    ├── Conflict (409)              conflict, already_exists, undo_not_supported,
    │                               undo_expired, already_undone, undo_conflict
    ├── PayloadTooLarge (413)       payload_too_large
    └── TooManyRequests (429)       too_many_attempts, too_many_streams
"""

from __future__ import annotations


class AppError(Exception):
    """Base of every error that is shown to a person or a client."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(AppError):
    status = 422
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message, code=code)
        #: The parameter or body path at fault, e.g. ``limit`` or ``events[3].action``.
        self.field = field


class NotAuthenticated(AppError):
    status = 401
    code = "not_authenticated"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"

    def __init__(self, message: str = "Nothing was found at this address.") -> None:
        super().__init__(message)


class Conflict(AppError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"


class TooManyRequests(AppError):
    status = 429
    code = "too_many_attempts"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, retry_after)


class UndoNotSupported(Conflict):
    code = "undo_not_supported"

    def __init__(self) -> None:
        super().__init__("Only your own settings changes can be undone.")


class UndoExpired(Conflict):
    code = "undo_expired"

    def __init__(self) -> None:
        super().__init__("This change is too old to undo; edit the setting instead.")


class AlreadyUndone(Conflict):
    code = "already_undone"

    def __init__(self) -> None:
        super().__init__("This change has already been undone.")


class UndoConflict(Conflict):
    code = "undo_conflict"

    def __init__(self, fields: list[str]) -> None:
        super().__init__(
            f"{', '.join(fields)} changed again since; undoing would overwrite the newer "
            "value, so nothing was changed."
        )
        self.fields = fields
