"""The HTTP search service: ``create_app(INDEX)`` gives a FastAPI app; ``lookalike serve INDEX`` runs it.

Endpoints (JSON unless said; OpenAPI at ``/docs`` and ``/openapi.json``):

=========================  ==================================================================  =======
endpoint                   body and answer                                                     auth
=========================  ==================================================================  =======
``GET /``                  the web page (static HTML, JS, CSS from the package; no CDN)        open
``POST /search``           multipart field ``file`` (an image) and optional ``k`` field, or    read
                           JSON ``{"vector": [dim numbers], "k": 10}``; ``?k=`` works for
                           both (the body wins); ``k`` defaults to 10, at most ``max_k``.
                           -> ``{"results": [{"id", "score", "metadata", "thumbnail"}],
                           "took_ms"}``, best first; ``thumbnail`` is ``/items/<id>/thumbnail``
                           with the id percent-encoded
``GET /items/{id}``        -> ``{"id", "metadata", "thumbnail"}``                              read
``GET /items/{id}/thumbnail``  -> a JPEG (longer side ``thumbnail_size``) of the item's image  read
``POST /items``            writes only: multipart ``file``, ``id`` and optional ``metadata``   write
                           (a JSON object; the key ``path`` is reserved) -> 201
                           ``{"id", "count"}``; the index is saved atomically before answering
``DELETE /items/{id}``     writes only -> ``{"id", "count"}``, saved atomically                write
``GET /health``            -> ``{"status": "ok", "count", "dim", "metric", "backend",          open
                           "descriptor", "writes", "read_token", "max_k", "max_upload_bytes"}``
``GET /metrics``           Prometheus text format (:mod:`lookalike.service.metrics`)           open
=========================  ==================================================================  =======

Errors are ``{"detail": "message"}`` (FastAPI's request validation gives a list instead):

=====  =============================================================================================
code   when
=====  =============================================================================================
400    a malformed body: JSON that does not parse, a broken multipart form
401    a missing or wrong ``Authorization: Bearer TOKEN`` where a token is configured
403    ``POST /items`` or ``DELETE /items/{id}`` on a server started without writes
404    an unknown id; a thumbnail of an item without a readable image; an unknown path
409    ``POST /items`` with an id already in the index
413    a body or upload over the size limit; an image over the pixel limit (decompression bomb)
415    a request that is neither ``multipart/form-data`` nor ``application/json``; an upload whose
       declared type is not JPEG/PNG/WebP/BMP, whose bytes are not, or whose type and bytes disagree
422    an unreadable image; bad ``k`` (not an integer in 1..max_k), vector, id or metadata; a missing
       ``file`` field; an image query to an index without a descriptor
500    a write whose save failed (the change is undone; the previous version stays on disk)
503    more than ``max_concurrency`` requests at once (``Retry-After: 1``); never for ``/health``
=====  =============================================================================================

Convention:
    - Ids in URLs are percent-encoded (``/`` as ``%2F``). An id ending in ``/thumbnail`` cannot be
      read through ``GET /items/{id}`` (its URL is that of another item's thumbnail).
    - No path from a request ever reaches the file system: thumbnails come from the index's own
      metadata (see :mod:`lookalike.service.engine`). Nothing is pickled.
    - The web framework is imported only here, when an app is made: ``import lookalike`` stays light.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from lookalike.core.errors import LookalikeError
from lookalike.service.errors import (
    BadRequestError,
    MalformedBodyError,
    PayloadTooLargeError,
    ServiceError,
    UnsupportedMediaError,
    WritesDisabledError,
)
from lookalike.service.settings import ServiceSettings

__all__ = ["create_app", "static_dir"]

log = logging.getLogger(__name__)


def static_dir() -> Path:
    """The folder of the web page's files shipped in the package."""
    return Path(str(resources.files("lookalike.service") / "static"))


def parse_k(value: Any, max_k: int) -> int:
    """``k`` from a query, form or JSON value: an integer in ``1..max_k``.

    Raises:
        BadRequestError: anything else (answered 422).

    Example:
        >>> parse_k("5", 100), parse_k(7, 100)
        (5, 7)
    """
    k: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        k = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        k = int(value.strip())
    if k is None or not 1 <= k <= max_k:
        raise BadRequestError(f"k: expected an integer from 1 to {max_k}, got {value!r}")
    return k


def _media_type(request: Any) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    from lookalike.service.schemas import ErrorBody

    text = {
        400: "malformed body",
        401: "missing or wrong bearer token",
        403: "writes are disabled",
        404: "unknown id or no image",
        409: "id already in the index",
        413: "body, upload or image too large",
        415: "unsupported content type or file signature",
        422: "invalid value or unreadable image",
        503: "too many requests at once",
    }
    return {c: {"model": ErrorBody, "description": text[c]} for c in codes}


def create_app(
    index_dir: str | Path,
    *,
    descriptor: str | None = None,
    allow_writes: bool = False,
    token: str | None = None,
    read_token: str | None = None,
    **limits: Any,
) -> Any:
    """A FastAPI app serving the index at ``index_dir`` (see the module docstring).

    Args:
        index_dir: the index directory.
        descriptor: the descriptor spec expected (``None``: the manifest's).
        allow_writes: enable ``POST /items`` and ``DELETE /items/{id}``.
        token: bearer token for writes; read_token: bearer token for reads.
        **limits: the other fields of :class:`~lookalike.service.settings.ServiceSettings`
            (``max_upload_bytes``, ``max_pixels``, ``max_concurrency``, ``max_k``,
            ``thumbnail_size``, ``images_root``, ``thumbnails_dir``, ``device``).

    Returns:
        The app; ``app.state.engine`` is its :class:`~lookalike.service.engine.SearchEngine`.

    Raises:
        OptionError: a bad setting. DataNotFoundError, CorruptIndexError, IndexMismatchError:
            see :class:`~lookalike.service.engine.SearchEngine`.
    """
    from lookalike.core.errors import OptionError

    known = set(ServiceSettings.__dataclass_fields__) - {"index_dir"}
    unknown = sorted(set(limits) - known)
    if unknown:
        raise OptionError(f"create_app: unknown keywords {unknown}; accepted: {sorted(known)}")
    settings = ServiceSettings(
        index_dir=Path(index_dir),
        descriptor=descriptor,
        allow_writes=allow_writes,
        token=token,
        read_token=read_token,
        **limits,
    )
    return _build(settings)


def _build(settings: ServiceSettings) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from starlette.routing import Match

    from lookalike.index.base import DuplicateIdError, ItemNotFoundError
    from lookalike.service.engine import SearchEngine
    from lookalike.service.guard import Guard
    from lookalike.service.metrics import Metrics

    engine = SearchEngine(settings)
    if settings.allow_writes and settings.token is None:
        log.warning("writes are enabled without a token: anyone who reaches the server can write")

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        engine.close()

    app = FastAPI(
        title="lookalike search",
        description="Search an image index by example image or vector (see lookalike.service.app).",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.settings = settings
    metrics = Metrics({"lookalike_index_items": ("Items in the index.", lambda: len(engine.index))})
    app.state.metrics = metrics

    def route_of(scope: Any) -> str:
        partial = "unmatched"
        for route in app.router.routes:
            match = route.matches(scope)[0]
            if match is Match.FULL:
                return getattr(route, "path", "unmatched")
            if match is Match.PARTIAL and partial == "unmatched":  # another method
                partial = getattr(route, "path", "unmatched")
        return partial

    app.add_middleware(
        Guard,
        metrics=metrics,
        max_concurrency=settings.max_concurrency,
        max_body_bytes=settings.max_body_bytes,
        routes=route_of,
    )

    @app.exception_handler(LookalikeError)
    async def _lookalike_error(request: Any, exc: LookalikeError) -> Any:
        if isinstance(exc, ServiceError):
            status = exc.status_code
        elif isinstance(exc, ItemNotFoundError):
            status = 404
        elif isinstance(exc, DuplicateIdError):
            status = 409
        else:
            status = 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    from lookalike.service import routes

    routes.add_routes(app, engine, settings, metrics)
    return app


def _version() -> str:
    from lookalike import __version__

    return __version__


async def read_json(request: Any) -> Any:
    """The parsed JSON body (400 when it does not parse)."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise MalformedBodyError(f"malformed JSON body: {exc}") from exc


async def read_upload(form: Any, settings: ServiceSettings) -> tuple[bytes, str | None]:
    """The bytes and declared type of the form's ``file`` field (checked for size only)."""
    from starlette.datastructures import UploadFile

    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise BadRequestError("expected an image file in the multipart form field 'file'")
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLargeError(
            f"upload too large: more than {settings.max_upload_bytes} bytes, the limit is "
            f"{settings.max_upload_bytes} bytes"
        )
    return data, upload.content_type


def require_form(request: Any) -> None:
    """415 unless the request is a multipart form."""
    if _media_type(request) != "multipart/form-data":
        raise UnsupportedMediaError(
            f"expected a multipart/form-data body, got {_media_type(request) or '(none)'!r}"
        )


def check_bearer(credentials: Any, tokens: tuple[str | None, ...]) -> None:
    """Raise 401 unless ``credentials`` (FastAPI's bearer credentials) carry one of ``tokens``.

    No configured token (``tokens`` empty or all ``None``) means open access.
    """
    from fastapi.exceptions import HTTPException

    wanted = [t for t in tokens if t is not None]
    if not wanted:
        return
    given = "" if credentials is None else str(credentials.credentials).strip()
    if not any(hmac.compare_digest(given.encode(), t.encode()) for t in wanted):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong bearer token (send 'Authorization: Bearer TOKEN')",
            headers={"WWW-Authenticate": "Bearer"},
        )


def check_writes(settings: ServiceSettings) -> None:
    if not settings.allow_writes:
        raise WritesDisabledError(
            "writes are disabled on this server; start it with --allow-writes to add or remove items"
        )
