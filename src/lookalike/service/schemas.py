"""JSON bodies of the search service, as pydantic models (they document the OpenAPI schema at ``/docs``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "ErrorBody",
    "Health",
    "Hit",
    "Item",
    "SearchResponse",
    "VectorQuery",
    "WriteResult",
]


class Hit(BaseModel):
    """One search result."""

    id: str = Field(description="the item's id")
    score: float = Field(
        description="cosine similarity or inner product (larger is nearer), or an L2 distance "
        "(smaller is nearer), as the index metric says (GET /health)"
    )
    metadata: dict[str, Any] = Field(description="the item's metadata, as stored in the index")
    thumbnail: str = Field(description="URL of the item's JPEG thumbnail: /items/<id>/thumbnail")


class SearchResponse(BaseModel):
    """Results of ``POST /search``, best first."""

    results: list[Hit]
    took_ms: float = Field(description="time to describe the query and search, in milliseconds")


class VectorQuery(BaseModel):
    """A JSON query: a vector as wide as the index, and ``k``."""

    vector: list[float] = Field(description="the query vector (index dim numbers)")
    k: int = Field(10, ge=1, description="neighbours wanted (1 to the server's max_k)")


class Item(BaseModel):
    """``GET /items/{id}``."""

    id: str
    metadata: dict[str, Any]
    thumbnail: str


class WriteResult(BaseModel):
    """``POST /items`` and ``DELETE /items/{id}``: the id written and the new item count."""

    id: str
    count: int


class Health(BaseModel):
    """``GET /health``."""

    status: str = Field(description='"ok"')
    count: int = Field(description="items in the index")
    dim: int
    metric: str = Field(description='"cosine", "ip" or "l2"')
    backend: str
    descriptor: str | None = Field(description="descriptor of the index; null: vector queries only")
    writes: bool = Field(description="whether POST /items and DELETE /items/{id} are enabled")
    read_token: bool = Field(description="whether reads need a bearer token")
    max_k: int
    max_upload_bytes: int


class ErrorBody(BaseModel):
    """Every error: a readable message (request validation errors give FastAPI's list instead)."""

    detail: str | list[Any]
