"""A real aiosmtpd SMTP server per test, recording what arrives; replies can be scripted."""

from __future__ import annotations

import asyncio
import base64
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.servers import make_self_signed_cert, unavailable


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class Handler:
    messages: list[Received] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)  # next DATA replies
    refused: dict[str, str] = field(default_factory=dict)  # recipient -> reply
    connections: int = 0  # client connections that said EHLO
    closed: int = 0  # of those, how many have ended (by either side)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refused:
            return self.refused[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.failures:
                code, text = self.failures.pop(0)
                return f"{code} {text}"
            self.messages.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 Message accepted"


# The fixtures below that start a server (tests using one are marked `smtp`, conftest.py).
SERVER_FIXTURES = frozenset(
    {
        "smtp_server",
        "smtp_slow_server",
        "smtp_idle_server",
        "smtp_ascii_server",
        "smtp_auth_server",
        "smtp_auth_server_off_loopback",
        "smtps_server",
        "starttls_server",
    }
)

USERS = {"mailbridge": "smtp-secret"}
TOKENS = {"mailbridge": "token-123"}


def _authenticate(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword):
        ok = USERS.get(auth_data.login.decode()) == auth_data.password.decode()
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535
    return AuthResult(success=False, handled=False)


class XOAuthHandler(Handler):
    """Adds the XOAUTH2 mechanism, checking the bearer token our sender presents."""

    async def auth_XOAUTH2(self, server, args):
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        blob = base64.b64decode(args[1]).decode()
        fields = dict(p.split("=", 1) for p in blob.split("\x01") if "=" in p)
        user, token = fields.get("user"), fields.get("auth", "").removeprefix("Bearer ")
        ok = TOKENS.get(user or "") == token
        return AuthResult(success=ok, handled=False, auth_data=user)


class _CountingSMTP(SMTP):
    """aiosmtpd's server, counting the client connections that end (its handlers cannot see
    that). The controller's own check that the port is up never says EHLO: not counted."""

    def connection_lost(self, error: Exception | None) -> None:
        greeted = self.session is not None and self.session.host_name is not None
        super().connection_lost(error)
        if greeted:
            handler: Handler = self.event_handler
            with handler.lock:
                handler.closed += 1


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: Handler
    cafile: Path | None = None

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def fail_next(self, code: int, text: str, times: int = 1) -> None:
        self.handler.failures.extend([(code, text)] * times)

    def refuse_recipient(self, address: str, code: int, text: str) -> None:
        self.handler.refused[address.lower()] = f"{code} {text}"

    def wait_for_closed(self, count: int, seconds: float = 10) -> None:
        """Until `count` connections have ended (a hang-up is an event, not a duration)."""
        deadline = time.monotonic() + seconds
        while self.handler.closed < count:
            assert time.monotonic() < deadline, f"{self.handler.closed} of {count} closed"
            time.sleep(0.01)


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _start(
    handler: Handler, cafile: Path | None = None, host: str = "127.0.0.1", **kwargs: object
) -> Iterator[SmtpServer]:
    # Controller.start() connects to its own port to check it is up: give it a real one.
    port = _free_port(host)
    controller = _Controller(handler, hostname=host, port=port, **kwargs)  # type: ignore[arg-type]
    try:
        controller.start()
    except Exception as exc:  # noqa: BLE001 - any start failure means "no server"
        unavailable("aiosmtpd", str(exc))
    try:
        yield SmtpServer(host, port, handler, cafile)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server that accepts everything (unless told otherwise)."""
    yield from _start(Handler())


class SlowHandler(Handler):
    """Takes a while over each message, as a real server does."""

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(SLOW_DATA_SECONDS)
        return await super().handle_DATA(server, session, envelope)


SLOW_DATA_SECONDS = 0.03


@pytest.fixture
def smtp_slow_server() -> Iterator[SmtpServer]:
    """Takes 30 ms over each message: delivery lags ingest, so a kill can fall amid it."""
    yield from _start(SlowHandler())


@pytest.fixture
def smtp_idle_server() -> Iterator[SmtpServer]:
    """Hangs up a connection idle for 0.3 s, as real servers do between batches."""
    yield from _start(Handler(), timeout=0.3)


@pytest.fixture
def smtp_ascii_server() -> Iterator[SmtpServer]:
    """A server without SMTPUTF8: it cannot take a non-ASCII address."""
    yield from _start(Handler(), enable_SMTPUTF8=False)


@pytest.fixture
def smtp_auth_server() -> Iterator[SmtpServer]:
    """An SMTP server that requires AUTH (PLAIN/LOGIN or XOAUTH2) before MAIL."""
    yield from _start(
        XOAuthHandler(),
        authenticator=_authenticate,
        auth_require_tls=False,
        auth_required=True,
    )


def own_address() -> str | None:
    """This machine's address on its network (not loopback), if it has one: the address a
    connected UDP socket would send from (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("198.51.100.1", 9))  # TEST-NET-2: routed, never reached
        except OSError:
            return None
        host = sock.getsockname()[0]
    return None if host.startswith("127.") else host


@pytest.fixture
def smtp_auth_server_off_loopback() -> Iterator[SmtpServer]:
    """smtp_auth_server on this machine's network address, where a login in clear text would
    cross the network (none on a machine with no network address: skipped, a failure in CI)."""
    host = own_address()
    if host is None:
        unavailable("an SMTP server off loopback", "this machine has no network address")
    yield from _start(
        XOAuthHandler(),
        host=host,
        authenticator=_authenticate,
        auth_require_tls=False,
        auth_required=True,
    )


@pytest.fixture(scope="session")
def smtp_certificate() -> Iterator[tuple[Path, Path]]:
    if shutil.which("openssl") is None:
        unavailable("aiosmtpd with TLS", "no openssl binary to make a test certificate")
    root = Path(tempfile.mkdtemp(prefix="mailbridge-smtp-tls-"))
    try:
        yield make_self_signed_cert(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


@pytest.fixture
def smtps_server(smtp_certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    """SMTP over implicit TLS (smtps://), trusting the returned cafile."""
    cert, key = smtp_certificate
    yield from _start(Handler(), cert, ssl_context=_server_context(cert, key))


@pytest.fixture
def starttls_server(smtp_certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    """SMTP that requires STARTTLS before MAIL (smtp+starttls://)."""
    cert, key = smtp_certificate
    yield from _start(
        Handler(), cert, tls_context=_server_context(cert, key), require_starttls=True
    )
