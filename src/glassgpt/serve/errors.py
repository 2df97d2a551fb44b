"""Errors in OpenAI's shape, {"error": {"message", "type", "param", "code"}}, and the gate that
refuses bodies over the limit and requests without the API key."""
from __future__ import annotations

import secrets

from fastapi.responses import JSONResponse


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


class Gate:
    """Pure ASGI middleware in front of every route (pure ASGI, so that handlers still see a
    client's disconnect): refuses bodies over `limit` bytes (by Content-Length, and while
    they arrive for chunked ones: reading past the limit raises a 413 APIError), requires
    the API key on paths starting with `protected`, and reports (path, status) of answers."""

    def __init__(self, app, limit: int, api_key: str | None, protected: tuple[str, ...], on_answer=None):
        self.app, self.limit, self.api_key, self.protected, self.on_answer = app, limit, api_key, protected, on_answer

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        length = headers.get("content-length", "")
        refusal = None
        if length.isdigit() and int(length) > self.limit:
            refusal = error_response(413, f"the body has {length} bytes, more than the limit {self.limit}", None,
                                     "request_too_large")
        elif self.api_key is not None and path.startswith(self.protected):
            given = headers.get("authorization", "")
            token = given[7:].strip() if given.lower().startswith("bearer ") else ""
            if not token or not secrets.compare_digest(token.encode(), self.api_key.encode()):
                refusal = error_response(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", None,
                                         "invalid_api_key")
        if refusal is not None:
            if self.on_answer is not None:
                self.on_answer(path, refusal.status_code)
            return await refusal(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise APIError(413, f"the body is over the limit of {self.limit} bytes", None, "request_too_large")
            return message

        async def reported(message):
            if message["type"] == "http.response.start" and self.on_answer is not None:
                self.on_answer(path, message["status"])
            await send(message)

        await self.app(scope, limited, reported)


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
               413: "invalid_request_error", 429: "rate_limit_error"}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status)
