"""Errors of the search service, each with the HTTP status it is answered with.

Every error is a :class:`~lookalike.core.errors.LookalikeError` (a ``ValueError``), so library callers
of :class:`~lookalike.service.engine.SearchEngine` catch them like any other lookalike error; the app
turns ``status_code`` into the response status and the message into ``{"detail": message}``.
"""

from __future__ import annotations

from lookalike.core.errors import LookalikeError

__all__ = [
    "BadRequestError",
    "ImageTooLargeError",
    "MalformedBodyError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ServiceError",
    "UnreadableImageError",
    "UnsupportedMediaError",
    "WritesDisabledError",
]


class ServiceError(LookalikeError):
    """Base of the service's errors; ``status_code`` is the HTTP status answered."""

    status_code = 400


class MalformedBodyError(ServiceError):
    """A body that does not parse: broken JSON, a broken multipart form."""

    status_code = 400


class PayloadTooLargeError(ServiceError):
    """The request body or the uploaded file is larger than the configured limit."""

    status_code = 413


class ImageTooLargeError(ServiceError):
    """The image header announces more pixels than the limit (a decompression bomb?)."""

    status_code = 413


class UnsupportedMediaError(ServiceError):
    """A request or upload content type that is not accepted, or bytes that are not such an image."""

    status_code = 415


class UnreadableImageError(ServiceError):
    """An upload whose bytes look like an accepted image format but cannot be decoded."""

    status_code = 422


class BadRequestError(ServiceError):
    """A well-formed request with an invalid value (``k``, a vector, an id, metadata)."""

    status_code = 422


class NotFoundError(ServiceError):
    """An unknown item id, or an item without an image for its thumbnail."""

    status_code = 404


class WritesDisabledError(ServiceError):
    """A write (``POST /items``, ``DELETE /items/{id}``) on a server started without writes."""

    status_code = 403
