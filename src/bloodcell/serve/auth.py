"""Optional API-key authentication for the `/v1/*` routes.

The key is checked in an ASGI middleware, before a single byte of the body is read, so a
client without the key cannot make the server parse or decode an upload. `/health`, the page
and its static files stay open: a load balancer needs the first, and the page asks for the key
itself. The OpenAPI spec declares the bearer scheme through FastAPI's `HTTPBearer`, which is
used for the documentation only (`auto_error=False`); the middleware is the check.
"""

from __future__ import annotations

import hmac
import os

from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

#: Environment variable read by `bloodcell serve` when --api-key is not given.
API_KEY_ENV = "BLOODCELL_API_KEY"
PROTECTED_PREFIX = "/v1/"

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description=f"The server's API key (`--api-key` or ${API_KEY_ENV}) as a bearer token.",
)


def api_key_from_env() -> str | None:
    """The key from the environment; an empty value means no key."""
    return os.environ.get(API_KEY_ENV) or None


class ApiKeyMiddleware:
    """Answer 401 to `/v1/*` requests without `Authorization: Bearer <key>`."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        if not api_key:
            raise ValueError("the API key must not be empty")
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        given = _bearer_token(scope)
        if given is None:
            detail = "authentication required: send the API key as 'Authorization: Bearer KEY'"
        elif not hmac.compare_digest(given, self.key):  # constant time: no timing oracle
            detail = "the API key is not valid"
        else:
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"detail": detail}, 401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


def _bearer_token(scope: Scope) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None
