"""Security headers on every response (docs/security.md): a Content-Security-Policy with
no inline script and no framing, no referrer beyond this site, no MIME sniffing, and pages
that are never cached by a shared proxy. Plus the pre-sign-in CSRF cookie, and a cap on
what a request may send (Starlette spools multipart files to disk whatever their size)."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailbridge.signin.tokens import new_token
from mailbridge.web.routing import CSRF_COOKIE

# The most a request's body may hold: forms are small, and an attachment is at most what
# an email could carry.
MAX_BODY = 25 * 1024 * 1024


class TooLarge(HTTPException):
    """A request body past MAX_BODY: an HTTPException, so FastAPI's form reading lets it
    through as it is instead of calling it a 400."""

    def __init__(self) -> None:
        super().__init__(413, "What you sent is too large, so nothing was done.")


class BodyLimit:
    """Refuse a body past `limit` as it is read: by its Content-Length, else as it streams."""

    def __init__(self, app: ASGIApp, *, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "0")
        too_long = not declared.isdigit() or int(declared) > self.limit
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            if too_long:
                raise TooLarge()
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLarge()
            return message

        await self.app(scope, counted, send)


def policy(form_targets: list[str]) -> str:
    """The CSP; `form_targets` are origins a form may lead to (the SSO provider's sign-in
    page, as the SSO button's form redirects there)."""
    forms = " ".join(["'self'", *form_targets])
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"font-src 'self'; connect-src 'self'; form-action {forms}; frame-ancestors 'none'; "
        "base-uri 'none'; object-src 'none'"
    )


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, csp: str, secure_cookies: bool) -> None:
        self.app = app
        self.csp = csp
        self.secure = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookie = HTTPConnection(scope).cookies.get(CSRF_COOKIE)
        # The JSON API (web/api.py) is called with a bearer token: it sets no cookie.
        api = scope["path"].startswith("/api/")
        fresh = None if api or (cookie and 20 <= len(cookie) <= 64) else new_token()
        scope.setdefault("state", {})["csrf_cookie"] = fresh or cookie

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # A page may carry a stricter policy of its own (the API's docs page).
                headers.setdefault("Content-Security-Policy", self.csp)
                headers["Referrer-Policy"] = "same-origin"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                if scope["path"].startswith("/static/"):
                    headers["Cache-Control"] = "public, max-age=3600"
                else:
                    headers.setdefault("Cache-Control", "no-store")
                if self.secure:
                    headers["Strict-Transport-Security"] = "max-age=31536000"
                if fresh:
                    flags = "; Secure" if self.secure else ""
                    headers.append(
                        "Set-Cookie",
                        f"{CSRF_COOKIE}={fresh}; Path=/; HttpOnly; SameSite=Lax{flags}",
                    )
            await send(message)

        await self.app(scope, receive, send_with_headers)
