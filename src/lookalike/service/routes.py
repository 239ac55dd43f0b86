"""The JSON routes of the search service (the table is in :mod:`lookalike.service.app`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from lookalike.service.app import (
    _media_type,
    _responses,
    check_bearer,
    check_writes,
    parse_k,
    read_json,
    read_upload,
    require_form,
    static_dir,
)
from lookalike.service.errors import BadRequestError, UnsupportedMediaError
from lookalike.service.metrics import CONTENT_TYPE
from lookalike.service.uploads import check_image_bytes

__all__ = ["add_routes"]

_BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer TOKEN")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]

_FORM_LIMITS = {"max_files": 1, "max_fields": 4}


def _parse_metadata(raw: Any) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        raise BadRequestError("metadata: expected a JSON object in a text form field")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(
            f"metadata: expected a JSON object, got unparsable text ({exc})"
        ) from exc
    if not isinstance(value, dict):
        raise BadRequestError(f"metadata: expected a JSON object, got {type(value).__name__}")
    return value


def _openapi_bodies() -> tuple[dict[str, Any], dict[str, Any]]:
    from lookalike.service.schemas import VectorQuery

    image = {"type": "string", "format": "binary", "description": "JPEG, PNG, WebP or BMP image"}
    search = {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": image, "k": {"type": "integer", "default": 10}},
                    }
                },
                "application/json": {"schema": VectorQuery.model_json_schema()},
            },
        }
    }
    add = {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "id"],
                        "properties": {
                            "file": image,
                            "id": {"type": "string", "description": "the new item's id"},
                            "metadata": {
                                "type": "string",
                                "description": "a JSON object (the key 'path' is reserved)",
                            },
                        },
                    }
                }
            },
        }
    }
    return search, add


def add_routes(app: Any, engine: Any, settings: Any, metrics: Any) -> None:
    """Add every route to ``app`` (the page, static files, health, metrics, search, items)."""
    read_tokens = (settings.read_token, settings.token) if settings.read_token else ()

    def reader(credentials: Credentials) -> None:
        check_bearer(credentials, read_tokens)

    def writer(credentials: Credentials) -> None:
        check_writes(settings)
        check_bearer(credentials, (settings.token,))

    _add_open_routes(app, engine, settings, metrics)
    _add_search_route(app, engine, settings, [Depends(reader)])
    _add_item_routes(app, engine, settings, [Depends(reader)], [Depends(writer)])


def _check_image(data: bytes, declared: str | None, settings: Any) -> Any:
    return check_image_bytes(
        data, declared, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels
    )


def _add_open_routes(app: Any, engine: Any, settings: Any, metrics: Any) -> None:
    """``/``, ``/static``, ``/metrics`` and ``/health``: never behind a token."""
    from lookalike.service.schemas import Health

    static = static_dir()
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def get_metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/health", response_model=Health, summary="Index summary and server limits")
    async def health() -> dict[str, Any]:
        info = engine.index.info()
        return {
            "status": "ok",
            **{key: info[key] for key in ("count", "dim", "metric", "backend", "descriptor")},
            "writes": settings.allow_writes,
            "read_token": settings.read_token is not None,
            "max_k": settings.max_k,
            "max_upload_bytes": settings.max_upload_bytes,
        }


def _add_search_route(app: Any, engine: Any, settings: Any, read: list[Any]) -> None:
    from lookalike.service.schemas import SearchResponse

    @app.post(
        "/search",
        response_model=SearchResponse,
        summary="The k nearest items of an uploaded image or a JSON vector",
        responses=_responses(400, 401, 413, 415, 422, 503),
        openapi_extra=_openapi_bodies()[0],
        dependencies=read,
    )
    async def search(
        request: Request,
        k: int | None = Query(
            None, ge=1, le=settings.max_k, description="neighbours (default 10); the body's k wins"
        ),
    ) -> dict[str, Any]:
        default_k = 10 if k is None else k
        kind = _media_type(request)
        if kind == "application/json":
            body = await read_json(request)
            if not isinstance(body, dict):
                raise BadRequestError(
                    f'expected a JSON object {{"vector": [...], "k": 10}}, got {type(body).__name__}'
                )
            n = parse_k(body.get("k", default_k), settings.max_k)
            hits, took = await run_in_threadpool(engine.search_vector, body.get("vector"), n)
        elif kind == "multipart/form-data":
            async with request.form(**_FORM_LIMITS) as form:
                data, declared = await read_upload(form, settings)
                raw_k = form.get("k", default_k)
            n = parse_k(raw_k, settings.max_k)
            image = _check_image(data, declared, settings)
            hits, took = await run_in_threadpool(engine.search_image, image, n)
        else:
            raise UnsupportedMediaError(
                f"expected a multipart/form-data image upload or an application/json vector, "
                f"got {kind or '(no content type)'!r}"
            )
        return {"results": hits, "took_ms": took}


def _add_item_routes(
    app: Any, engine: Any, settings: Any, read: list[Any], write: list[Any]
) -> None:
    from lookalike.service.schemas import Item, WriteResult

    @app.get(
        "/items/{item_id:path}/thumbnail",
        response_class=Response,
        summary="A JPEG thumbnail of an item's image",
        responses={200: {"content": {"image/jpeg": {}}}, **_responses(401, 404, 503)},
        dependencies=read,
    )
    async def thumbnail(item_id: str) -> Response:
        data = await run_in_threadpool(engine.thumbnail, item_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    @app.get(
        "/items/{item_id:path}",
        response_model=Item,
        summary="An item's metadata",
        responses=_responses(401, 404, 503),
        dependencies=read,
    )
    async def get_item(item_id: str) -> dict[str, Any]:
        return await run_in_threadpool(engine.item, item_id)  # the index lock may be held by a save

    @app.post(
        "/items",
        status_code=201,
        response_model=WriteResult,
        summary="Add an image under a new id (writes enabled only); saved atomically",
        responses=_responses(400, 401, 403, 409, 413, 415, 422, 503),
        openapi_extra=_openapi_bodies()[1],
        dependencies=write,
    )
    async def add_item(request: Request) -> dict[str, Any]:
        require_form(request)
        async with request.form(**_FORM_LIMITS) as form:
            data, declared = await read_upload(form, settings)
            item_id, raw_meta = form.get("id"), form.get("metadata")
        if not isinstance(item_id, str):
            raise BadRequestError("expected the new item's id in the form field 'id'")
        metadata = _parse_metadata(raw_meta)
        image = _check_image(data, declared, settings)
        count = await run_in_threadpool(engine.add_item, item_id, image, metadata)
        return {"id": item_id, "count": count}

    @app.delete(
        "/items/{item_id:path}",
        response_model=WriteResult,
        summary="Remove an item (writes enabled only); saved atomically",
        responses=_responses(401, 403, 404, 503),
        dependencies=write,
    )
    async def delete_item(item_id: str) -> dict[str, Any]:
        count = await run_in_threadpool(engine.remove_item, item_id)
        return {"id": item_id, "count": count}
