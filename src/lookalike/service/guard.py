"""ASGI middleware in front of every route: bounded concurrency (503), body size (413), metrics.

Convention:
    - At most ``max_concurrency`` requests are handled at once; one more is answered at once with
      503 and ``Retry-After: 1`` (it never waits in a queue). ``/health`` and ``/metrics`` are not
      counted and never refused, so monitoring sees a saturated server.
    - A body announced (``Content-Length``) or streamed beyond ``max_body_bytes`` is answered 413
      before it is parsed; a streamed body is cut off as soon as it crosses the limit.
    - Every answered request is counted in :class:`~lookalike.service.metrics.Metrics` by method,
      route template and status, with its latency.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from lookalike.service.metrics import Metrics

__all__ = ["Guard"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

EXEMPT = ("/health", "/metrics")
_CONVERTER = re.compile(r"\{(\w+):\w+\}")


class _BodyTooLargeError(Exception):
    pass


async def reply(
    send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    """Send a complete ``{"detail": ...}`` JSON response."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """The middleware (see the module Convention).

    Args:
        app: the ASGI app behind it.
        metrics: where requests are counted.
        max_concurrency: requests handled at once.
        max_body_bytes: largest request body.
        routes: callable giving the route template (or mount path) serving a scope, for the
            metrics label.
    """

    def __init__(
        self,
        app: Any,
        *,
        metrics: Metrics,
        max_concurrency: int,
        max_body_bytes: int,
        routes: Callable[[Scope], str],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_concurrency = max_concurrency
        self.max_body_bytes = max_body_bytes
        self.routes = routes
        self.busy = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = {"status": 500, "started": False, "received": 0}
        label = _CONVERTER.sub(r"{\1}", self.routes(scope))  # before routing rewrites the scope

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = int(message["status"])
                state["started"] = True
            await send(message)

        try:
            await self._handle(scope, receive, send_counted, state)
        finally:
            self.metrics.observe(
                scope["method"], label, state["status"], time.perf_counter() - start
            )

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, state: dict[str, Any]
    ) -> None:
        exempt = scope["path"] in EXEMPT
        if not exempt and self.busy >= self.max_concurrency:
            await reply(
                send,
                503,
                f"server busy: {self.busy} requests in progress, the limit is "
                f"{self.max_concurrency}; retry later",
                {"Retry-After": "1"},
            )
            return
        announced = _content_length(scope)
        if announced is not None and announced > self.max_body_bytes:
            await reply(send, 413, self._too_large(announced))
            return

        async def receive_counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body_bytes:
                    raise _BodyTooLargeError
            return message

        if not exempt:
            self.busy += 1
            self.metrics.in_flight = self.busy
        try:
            await self.app(scope, receive_counted, send)
        except _BodyTooLargeError:
            if state["started"]:
                raise
            await reply(send, 413, self._too_large(state["received"], at_least=True))
        finally:
            if not exempt:
                self.busy -= 1
                self.metrics.in_flight = self.busy

    def _too_large(self, size: int, *, at_least: bool = False) -> str:
        more = "more than " if at_least else ""
        return (
            f"request body too large: {more}{size} bytes, the limit is {self.max_body_bytes} bytes "
            f"(one upload plus its form)"
        )


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
