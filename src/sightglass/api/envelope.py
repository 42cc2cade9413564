"""The Prometheus API envelope, used for every JSON answer Sightglass gives."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response

_STATUS = {
    "bad_data": 400,
    "execution": 422,
    "timeout": 503,
    "canceled": 503,
    "internal": 500,
    "not_found": 404,
    "unavailable": 503,
    "too_large": 413,
    "unsupported_media_type": 415,
}


class APIError(Exception):
    """Raised by a handler to answer with the error envelope."""

    def __init__(self, message: str, error_type: str = "bad_data", status: int | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.status = status or _STATUS.get(error_type, 400)


def success(data: Any, warnings: list[str] | None = None, status: int = 200) -> Response:
    body: dict[str, Any] = {"status": "success", "data": data}
    if warnings:
        body["warnings"] = warnings
    return JSONResponse(body, status_code=status)


def success_json(data_json: str, warnings: list[str] | None = None, status: int = 200) -> Response:
    """:func:`success` for a ``data`` member already encoded as compact JSON text (a query result's
    ``to_json()``): the same bytes and headers as ``success(data, warnings)``."""
    body = '{"status":"success","data":' + data_json
    if warnings:
        body += ',"warnings":' + json.dumps(warnings, ensure_ascii=False, separators=(",", ":"))
    return Response((body + "}").encode("utf-8"), status_code=status, media_type="application/json")


def error(message: str, error_type: str = "bad_data", status: int | None = None) -> Response:
    return JSONResponse(
        {"status": "error", "errorType": error_type, "error": message},
        status_code=status or _STATUS.get(error_type, 400),
    )
