"""What is refused before the body of a scoring request is read (pure ASGI, so nothing is buffered).

Order of the checks on ``POST /assess``: a foreign web page (an ``Origin`` that is neither this
server nor a ``--cors-origin``) -> 403; a missing or wrong API key -> 401; the model not loaded ->
503; the queue full -> 503 with Retry-After; a ``Content-Length`` over the limit -> 413. Then the
body streams through a counter that refuses it (413) as soon as it passes the limit, so a lying or
absent Content-Length costs at most the limit plus one chunk."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

from lmm_apa.serve.errors import ApiError

SCORING_PATHS = ("/assess",)
API_KEY_HEADER = "x-api-key"
RETRY_AFTER_S = 2


@dataclass
class GuardConfig:
    max_body_bytes: int
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    ready: Callable[[], tuple[bool, str]] = lambda: (True, "")
    has_room: Callable[[], bool] = lambda: True
    refused: dict = field(default_factory=lambda: {"busy": 0})  # counters for /health


def presented_key(headers: dict[str, str]) -> str | None:
    """The key from ``X-API-Key`` or ``Authorization: Bearer <key>``."""
    if API_KEY_HEADER in headers:
        return headers[API_KEY_HEADER]
    auth = headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


def key_ok(expected: str | None, given: str | None) -> bool:
    return expected is None or (given is not None and hmac.compare_digest(given.encode(), expected.encode()))


def foreign_origin(headers: dict[str, str], allowed: tuple[str, ...]) -> str | None:
    """The request's Origin when it is another site that ``--cors-origin`` does not list."""
    origin = headers.get("origin")
    if not origin or origin in allowed or "*" in allowed:
        return None
    return None if urlsplit(origin).netloc == headers.get("host", "") else origin


class ScoringGuard:
    def __init__(self, app, config: GuardConfig):
        self.app, self.config = app, config

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in SCORING_PATHS:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            self._admit(headers)
        except ApiError as e:
            from fastapi.responses import JSONResponse

            return await JSONResponse(e.body(), status_code=e.status_code, headers=e.headers)(scope, receive, send)
        return await self.app(scope, self._counting(receive), send)

    def _admit(self, headers: dict[str, str]) -> None:
        cfg = self.config
        origin = foreign_origin(headers, cfg.cors_origins)
        if origin:
            raise ApiError(403, "origin_not_allowed", f"requests from {origin[:100]} are not allowed "
                           "(the server's --cors-origin lists the sites that may call it)", None)
        if not key_ok(cfg.api_key, presented_key(headers)):
            raise ApiError(401, "unauthorized", "this server needs an API key (X-API-Key header)", "api_key",
                           headers={"WWW-Authenticate": "Bearer"})
        ready, reason = cfg.ready()
        if not ready:
            raise ApiError(503, "not_ready", reason, None, headers={"Retry-After": "10"})
        if not cfg.has_room():
            cfg.refused["busy"] += 1
            raise ApiError(503, "busy", "the server is busy; try again in a few seconds", None,
                           headers={"Retry-After": str(RETRY_AFTER_S)})
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cfg.max_body_bytes:
            raise self._too_large()

    def _too_large(self) -> ApiError:
        mb = self.config.max_body_bytes / (1024 * 1024)
        return ApiError(413, "upload_too_large", f"the upload is over {mb:.0f} MB", "audio")

    def _counting(self, receive):
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.config.max_body_bytes:
                    raise self._too_large()
            return message

        return counted
