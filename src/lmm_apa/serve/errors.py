"""One error shape for every refusal: ``{"error": code, "detail": plain words, "field": name}``.

Why its own module: a learner's page and a school's integration both need to tell "too long" from
"server busy" without parsing prose, and neither may see our internals (object reprs, arrays,
tracebacks). Every refusal is raised as :class:`ApiError` or mapped to the same shape here."""

from __future__ import annotations

import re
from typing import Iterable

from starlette.exceptions import HTTPException

_ARRAY_REPR = re.compile(r"\s*<array of \d+ samples>")
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")
_EXCEPTION_PREFIX = re.compile(r"^(?:[A-Z]\w*(?:Error|Exception)): ")
MAX_DETAIL_CHARS = 600


class ApiError(HTTPException):
    """A refusal with its HTTP status, a stable code, a plain-words reason and the field at fault."""

    def __init__(self, status_code: int, error: str, detail: str, field: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.error = error
        self.field = field

    def body(self) -> dict:
        return {"error": self.error, "detail": self.detail, "field": self.field}


def capped(items: Iterable[str], first: int = 5) -> str:
    """``'A', 'B', 'C' and 97 more``: an error names a few offenders, never a megabyte of them."""
    items = list(items)
    shown = ", ".join(repr(i) for i in items[:first])
    return shown + (f" and {len(items) - first} more" if len(items) > first else "")


def public_message(message: str) -> str:
    """A message fit for a client: no exception class prefix, no array or object reprs, bounded."""
    text = _EXCEPTION_PREFIX.sub("", str(message))
    text = _OBJECT_REPR.sub("the upload", _ARRAY_REPR.sub("", text))
    return text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS] + "…"


def _status_code_name(status: int) -> str:
    return {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
            413: "too_large", 415: "unsupported_media", 422: "invalid", 503: "unavailable",
            504: "timeout"}.get(status, f"http_{status}")


def install_error_handlers(app) -> None:
    """Map our ApiError, Starlette's HTTPException and FastAPI's validation errors to the one shape."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    async def api_error(request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    async def http_error(request, exc: HTTPException):
        body = {"error": _status_code_name(exc.status_code), "detail": public_message(exc.detail), "field": None}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def validation_error(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "header")]
        field = loc[-1] if loc else None
        msg = first.get("msg", "invalid request")
        detail = f"{field}: {msg}" if field else msg
        if first.get("type") == "missing" and field:
            detail = f"{field} is required"
        return JSONResponse({"error": "invalid", "detail": detail, "field": field}, status_code=422)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
