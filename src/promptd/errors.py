"""promptd's own errors. Every layer raises these; each API face turns them into its wire shape.

    PromptdError
    ├── CatalogError            the catalog file is invalid (carries every problem found)
    ├── InputError              the client sent something invalid (bad field, missing input, …)
    │   ├── NotFound            a named entity (message, file, end user, project, model) does not exist
    │   └── TooLarge            an uploaded file is over its size limit (413)
    ├── AuthError               missing or invalid API key
    ├── Forbidden               the key is valid but may not do this
    ├── ConflictError           the request conflicts with the app's configuration (wrong mode, feature off)
    ├── LimitExceeded           a rate limit of the key, project or end user is reached (429, Retry-After)
    │   └── BudgetExceeded          a cost budget (per day or month) of the key or project is spent
    ├── LimitsUnavailable       limits apply but cannot be checked (Redis unreachable): refused, 503
    ├── StoreUnavailable        the database is unreachable and the request needs it (an unknown key): 503
    ├── ModerationUnavailable   the app's moderation service failed: the answer is withheld, 503
    └── ProviderError           the model provider failed
        ├── ProviderUnavailable     cannot connect, or 5xx
        ├── ProviderRateLimited     429 upstream
        ├── ProviderTimeout         connect / first-token / idle / total deadline passed
        └── ProviderBadRequest      upstream rejected the request (4xx other than 429)

Each carries a stable ``code`` (snake_case) that faces map onto their own codes.
"""

from __future__ import annotations

import math

__all__ = [
    "AuthError",
    "BudgetExceeded",
    "CatalogError",
    "ConflictError",
    "Forbidden",
    "InputError",
    "LimitExceeded",
    "LimitsUnavailable",
    "ModerationUnavailable",
    "NotFound",
    "PromptdError",
    "ProviderBadRequest",
    "ProviderError",
    "ProviderRateLimited",
    "ProviderTimeout",
    "ProviderUnavailable",
    "StoreUnavailable",
    "TooLarge",
    "retry_after_header",
]


class PromptdError(Exception):
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class CatalogError(PromptdError):
    code = "catalog_invalid"

    def __init__(self, problems: list[str], *, source: str = "<catalog>") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  {source}: {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the catalog:\n{lines}")


class InputError(PromptdError):
    code = "invalid_param"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message, code=code)
        self.param = param


class NotFound(InputError):
    code = "not_found"


class TooLarge(InputError):
    code = "file_too_large"


class AuthError(PromptdError):
    code = "unauthorized"


class Forbidden(PromptdError):
    code = "forbidden"


class ConflictError(PromptdError):
    code = "app_unavailable"


class LimitExceeded(PromptdError):
    """Over a limit of promptd's own (not an upstream's 429: that is ProviderRateLimited)."""

    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, scope: str, what: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.scope = scope  # "key" | "project" | "user"
        self.what = what  # "requests" | "tokens" | "cost"


class BudgetExceeded(LimitExceeded):
    code = "insufficient_quota"


class LimitsUnavailable(PromptdError):
    """Budgets fail closed: a request whose limits cannot be checked is refused, not let through unchecked."""

    code = "service_unavailable"


class StoreUnavailable(PromptdError):
    """The database cannot be reached and the answer depends on it (a key not verified before): try again."""

    code = "service_unavailable"


class ModerationUnavailable(PromptdError):
    """Moderation fails closed: when the app's moderation service cannot answer, neither does the app."""

    code = "moderation_unavailable"


class ProviderError(PromptdError):
    code = "provider_error"
    retryable = False


class ProviderUnavailable(ProviderError):
    code = "provider_unavailable"
    retryable = True


class ProviderRateLimited(ProviderError):
    code = "provider_rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    code = "provider_timeout"
    retryable = True


class ProviderBadRequest(ProviderError):
    code = "provider_bad_request"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message, code=code)
        self.param = param  # the request field the upstream refused, when it says (OpenAI's `param`)


def retry_after_header(exc: BaseException) -> dict[str, str]:
    """The Retry-After header for a 429 that knows when to come back: whole seconds, rounded up (coming back
    early would only fail again), at least 1. Empty for any other error."""
    seconds = exc.retry_after if isinstance(exc, LimitExceeded | ProviderRateLimited) else None
    return {} if seconds is None else {"Retry-After": str(max(1, math.ceil(seconds)))}
