"""A real Dovecot IMAP server for the test session, on free loopback ports in a temp dir.

One server per session (starting one takes ~0.2 s, stopping ~1.4 s); each test that wants
a clean mailbox gets a fresh user: Dovecot re-reads the passwd-file when it changes.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.servers import make_self_signed_cert, unavailable

DOVECOT_CANDIDATES = ("dovecot", "/usr/sbin/dovecot")
PASSWORD = "secret"
NOBODY = 65534
# Addresses where the server offers no MOVE, and no MOVE nor UIDPLUS (`_config`).
NO_MOVE_HOST = "127.0.0.2"
NO_UIDPLUS_HOST = "127.0.0.3"
# Users present from the start, one per test that asks for a clean mailbox.
SPARE_USERS = tuple(f"u{n:03d}-{uuid.uuid4().hex[:6]}" for n in range(300))
_spare = iter(SPARE_USERS)


@dataclass(frozen=True)
class DovecotServer:
    """Where the test server listens, and the user a test should log in as."""

    host: str
    port: int  # plaintext IMAP (STARTTLS offered)
    tls_port: int  # implicit TLS (imaps)
    cafile: Path  # the self-signed certificate, to trust it
    user: str
    password: str
    log_path: Path
    root: Path = field(repr=False)

    def maildir_root(self, user: str | None = None) -> Path:
        return self.root / "mail" / (user or self.user) / "Maildir"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    @contextlib.contextmanager
    def client(self, user: str | None = None) -> Iterator[IMAPClient]:
        """A logged-in plaintext connection of our own, to arrange or inspect a mailbox."""
        client = IMAPClient(self.host, self.port, ssl=False, timeout=30)
        try:
            client.login(user or self.user, self.password)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def append(self, raw: bytes, folder: str = "INBOX", msg_time: datetime | None = None) -> int:
        """APPEND one message; returns its UID (from the UIDPLUS APPENDUID answer).

        Its INTERNALDATE is `msg_time`, else now on the test's clock (which a test may have
        fixed), never the server's: the time the server received the mail decides the
        case's year and deadlines."""
        with self.client() as client:
            answer = client.append(folder, raw, msg_time=msg_time or datetime.now(UTC))
        found = re.search(rb"APPENDUID \d+ (\d+)", answer)
        assert found, answer
        return int(found.group(1))

    def uids(self, folder: str) -> list[int]:
        with self.client() as client:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            return sorted(client.search("ALL"))

    def sessions(self, user: str | None = None) -> list[str]:
        """The titles of the user's imap processes on this server, e.g.
        "dovecot-mailbridge-test-40123/imap [u001-3fa2c1 127.0.0.1 IDLE]" (verbose_proctitle;
        the instance name tells this server's processes from another session's)."""
        start = f"dovecot-{_instance(self.port)}/imap [{user or self.user} "
        titles = (" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))
        return [title for title in titles if title.startswith(start)]

    def wait_until_idling(self, user: str | None = None, seconds: float = 20) -> None:
        """Until a client of the user's is in IMAP IDLE on this server."""
        deadline = time.monotonic() + seconds
        while not any(t.endswith(" IDLE]") for t in self.sessions(user)):
            assert time.monotonic() < deadline, f"no client idling: {self.sessions(user)}"
            time.sleep(0.05)

    def kick(self, user: str | None = None) -> None:
        """Disconnect the user's sessions from the server side, as a restart would."""
        subprocess.run(
            ["doveadm", "-c", str(self.root / "dovecot.conf"), "kick", user or self.user],
            check=True,
            capture_output=True,
        )

    def add_user(self, name: str) -> DovecotServer:
        """A new, empty mailbox: append a passwd-file line and wait until Dovecot sees it.

        Dovecot re-reads a changed passwd-file at most once a second, so this takes up to
        a second; `imap_mailbox` hands out users made at start-up instead.
        """
        with (self.root / "passwd").open("a", encoding="utf-8") as f:
            f.write(f"{name}:{{PLAIN}}{self.password}::::::\n")
        server = replace(self, user=name)
        deadline = time.monotonic() + 5
        while True:
            try:
                with server.client():
                    return server
            except LoginError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def _tail(*paths: Path, lines: int = 8) -> str:
    text: list[str] = []
    for path in paths:
        if path.exists():
            text += path.read_text(errors="replace").splitlines()[-lines:]
    return " | ".join(t.strip() for t in text if t.strip()) or "no log output"


def _identity() -> dict[str, str]:
    """Users and ids Dovecot runs as: nobody as root (it refuses uid 0), else ourselves."""
    if os.geteuid() == 0:
        return {
            "login_user": "dovenull",
            "internal_user": "dovecot",
            "internal_group": "dovecot",
            "uid": str(NOBODY),
            "gid": str(NOBODY),
            "chroot": "",
        }
    uid, gid = os.getuid(), os.getgid()
    return {
        "login_user": pwd.getpwuid(uid).pw_name,
        "internal_user": pwd.getpwuid(uid).pw_name,
        "internal_group": grp.getgrgid(gid).gr_name,
        "uid": str(uid),
        "gid": str(gid),
        "chroot": "  chroot =\n",
    }


def _instance(port: int) -> str:
    return f"mailbridge-test-{port}"


def _config(root: Path, port: int, tls_port: int) -> str:
    who = _identity()
    return f"""\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = {_instance(port)}
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes
# Each imap process's title names its user and the command it is in ("IDLE"): tests wait
# for a client to be idling instead of sleeping and hoping it is.
verbose_proctitle = yes
default_login_user = {who["login_user"]}
default_internal_user = {who["internal_user"]}
default_internal_group = {who["internal_group"]}
first_valid_uid = {who["uid"]}
first_valid_gid = {who["gid"]}
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={who["uid"]} gid={who["gid"]} home={root}/mail/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1 {NO_MOVE_HOST} {NO_UIDPLUS_HOST}
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
{who["chroot"]}}}
# The same server, as seen on other loopback addresses, says it cannot MOVE (and there
# without UIDPLUS): a client then takes its COPY, STORE \\Deleted and EXPUNGE path.
local {NO_MOVE_HOST} {{
  protocol imap {{
    imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE UIDPLUS
  }}
}}
local {NO_UIDPLUS_HOST} {{
  protocol imap {{
    imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
{who["chroot"]}}}
"""


class DovecotUnavailable(RuntimeError):
    """Dovecot could not be started here; the message says why."""


@contextlib.contextmanager
def running_dovecot() -> Iterator[DovecotServer]:
    """Start a throwaway Dovecot (tests and benchmarks); stop it and remove its files after."""
    binary = next((b for b in map(shutil.which, DOVECOT_CANDIDATES) if b), None)
    if binary is None:
        raise DovecotUnavailable("no dovecot binary (run scripts/install-test-deps)")
    if shutil.which("openssl") is None:
        raise DovecotUnavailable("no openssl binary to make its test certificate")
    # Not under pytest's 0700 tmp dirs: Dovecot's mail processes (uid nobody) must reach it.
    root = Path(tempfile.mkdtemp(prefix="mailbridge-dovecot-"))
    root.chmod(0o755)
    proc: subprocess.Popen[bytes] | None = None
    try:
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir()
        if os.geteuid() == 0:
            os.chown(root / "mail", NOBODY, NOBODY)
        make_self_signed_cert(root)
        users = ["enquiries", *SPARE_USERS]
        (root / "passwd").write_text("".join(f"{u}:{{PLAIN}}{PASSWORD}::::::\n" for u in users))
        (root / "passwd").chmod(0o644)
        port, tls_port = _free_port(), _free_port()
        conf = root / "dovecot.conf"
        conf.write_text(_config(root, port, tls_port))
        stderr = root / "stderr.log"
        with stderr.open("wb") as err:
            proc = subprocess.Popen(
                [binary, "-F", "-c", str(conf)], stdout=err, stderr=subprocess.STDOUT
            )
        if not (_wait_for_port(port, proc, 10) and _wait_for_port(tls_port, proc, 5)):
            raise DovecotUnavailable(f"did not start: {_tail(stderr, root / 'dovecot.log')}")
        yield DovecotServer(
            host="127.0.0.1",
            port=port,
            tls_port=tls_port,
            cafile=root / "cert.pem",
            user="enquiries",
            password=PASSWORD,
            log_path=root / "dovecot.log",
            root=root,
        )
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    try:
        with running_dovecot() as server:
            yield server
    except DovecotUnavailable as exc:
        unavailable("Dovecot", str(exc))


@pytest.fixture
def imap_mailbox(dovecot: DovecotServer) -> DovecotServer:
    """The server, logged in as a brand-new user: an empty INBOX and no other folders."""
    name = next(_spare, None)
    if name is None:
        return dovecot.add_user(f"u{uuid.uuid4().hex[:12]}")
    return replace(dovecot, user=name)
