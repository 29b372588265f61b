"""Errors whose text is for the user, and what the user sees of every other error.

Exceptions that carry a message written for users, shown to them as it is:

- :class:`ServiceError` and its subclasses (``NotFound``, ``Forbidden``, ``Conflict``,
  ``Invalid``, ``LimitExceeded``): a 4xx JSON body ``{"error": ...}``;
- ``BackendError`` and its subclasses (``AccountRefused``, the batch backends'
  ``CommandError``) from ``spawners/base.py``: a FAILED cluster's reason, an event, a
  403 for ``AccountRefused``; backends keep secrets, other users' paths and raw output
  of other accounts' commands out of them;
- ``ValueError`` raised by the operator's cluster options handler (``OptionsError``
  included): the handler's way to refuse options, a 422.

Anything else is unexpected (a bug, a library's internals, an operating-system error
with paths in it): :func:`report_unexpected` logs its traceback once under a short
error id and gives the user a sentence that says what failed and quotes the id, never
the exception's text.
"""

from __future__ import annotations

import logging
import secrets

from ..spawners.base import BackendError

log = logging.getLogger("hubgate.errors")


class ServiceError(Exception):
    """A request the service refuses, with the status code and a message that says
    what is wrong and what to do."""

    status_code = 400

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class NotFound(ServiceError):
    status_code = 404


class Forbidden(ServiceError):
    status_code = 403


class Conflict(ServiceError):
    status_code = 409


class Invalid(ServiceError):
    """Bad input: dask-gateway's client maps 422 to ValueError."""

    status_code = 422


class LimitExceeded(ServiceError):
    """Over a per-user limit; 409 so that dask-gateway's client shows the message
    (as ``GatewayClusterError``)."""

    status_code = 409


#: The exception types whose text is shown to users as it is (see the module docstring).
USER_SAFE_ERRORS: tuple[type[Exception], ...] = (ServiceError, BackendError)


def new_error_id() -> str:
    """A short id that names one unexpected error in the service log."""
    return secrets.token_hex(4)


def unexpected_error_message(doing: str, error_id: str) -> str:
    """What a user reads about an unexpected error: what failed, and the id."""
    return (
        f"the service hit an unexpected error while {doing} (error id {error_id}); "
        "an administrator can find the details in the service log"
    )


def report_unexpected(exc: BaseException, doing: str) -> str:
    """Log ``exc`` with its traceback under a new error id; return the user's text."""
    error_id = new_error_id()
    log.error("Unexpected error while %s (error id %s)", doing, error_id, exc_info=exc)
    return unexpected_error_message(doing, error_id)


class HubMisconfigured(ServiceError):
    """The operator's configuration cannot serve this request (an options handler
    returned a key nothing reads): not the user's doing, and nothing they can fix. 409,
    so that dask-gateway's client shows the message (``GatewayClusterError``); the
    details are in the service log, never in the answer."""

    status_code = 409
