"""One error tree for LUC; the API maps it to HTTP statuses in one handler.

::

    LucError
    ├── SettingsError            a LUC_* variable is invalid            (start-up)
    ├── DatabaseUnavailableError PostgreSQL cannot be reached           503
    ├── NotFoundError            the resource does not exist            404
    ├── InvalidRequestError      the request cannot be processed        400 / 422
    │   └── PayloadTooLargeError body or batch beyond its limit         413
    ├── CatalogError             a catalog version is invalid           422
    ├── ConflictError            the request clashes with stored state  409
    └── UpstreamError            an outside service failed us           502
"""

from __future__ import annotations


class LucError(Exception):
    """Root of every error LUC raises on purpose."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SettingsError(LucError):
    """A ``LUC_*`` environment variable holds an invalid value."""


class DatabaseUnavailableError(LucError):
    """PostgreSQL cannot be reached; the client should retry later."""

    status_code = 503


class NotFoundError(LucError):
    status_code = 404


class InvalidRequestError(LucError):
    status_code = 422

    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.status_code = status_code


class PayloadTooLargeError(InvalidRequestError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=413)


class CatalogError(LucError):
    status_code = 422


class ConflictError(LucError):
    """The request cannot apply to the state stored now (nothing new to invoice, say)."""

    status_code = 409


class UpstreamError(LucError):
    """An outside service (OpenRouter's model list, say) failed or answered nonsense."""

    status_code = 502
