"""Unexpected exceptions in HTTP handlers: the traceback goes to the service log once,
under an error id, and the answer (JSON or a page) quotes the id, never the exception."""

from __future__ import annotations

import logging
from typing import Any

from tornado.web import HTTPError, RequestHandler

from .errors import USER_SAFE_ERRORS, ServiceError, new_error_id, unexpected_error_message

log = logging.getLogger("hubgate.errors")


class LogsUnexpectedErrors(RequestHandler):
    """A handler base whose ``log_exception`` names each unexpected exception with an
    error id (kept in ``error_id`` for ``write_error``, which tornado calls next)."""

    error_id: str | None = None

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if value is None or isinstance(value, HTTPError | ServiceError):
            super().log_exception(typ, value, tb)
            return
        if isinstance(value, USER_SAFE_ERRORS):
            # A backend's message for the user: shown as it is, so no id is needed.
            log.warning(
                "%s %s failed in the backend: %s",
                self.request.method,
                self.request.path,
                value,
                exc_info=(typ, value, tb),
            )
            return
        self.error_id = new_error_id()
        log.error(
            "Unexpected error while handling %s %s (error id %s)",
            self.request.method,
            self.request.path,
            self.error_id,
            exc_info=(typ, value, tb),
        )

    def unexpected_error_text(self) -> str | None:
        """The user's sentence about this request's unexpected error, if it had one."""
        if self.error_id is None:
            return None
        text = unexpected_error_message("handling this request", self.error_id)
        return text[0].upper() + text[1:]
