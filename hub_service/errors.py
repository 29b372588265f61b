"""Errors whose text is for the user: each maps to a 4xx JSON body ``{"error": ...}``."""

from __future__ import annotations


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
