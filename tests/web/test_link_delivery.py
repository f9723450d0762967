"""A sign-in link asked for in the console leaves at once through `mailbridge run` running
beside it: the console queues the email and rings the service's delivery process
(delivery/wake.py), which sends it to a real SMTP server. Two processes, one database."""

from __future__ import annotations

import socket
import subprocess
import time
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mailbridge.config import load_config
from mailbridge.delivery.wake import folder, ring_courier
from mailbridge.store.db import make_engine
from mailbridge.web.app import create_app
from mailbridge.web.routing import CSRF_COOKIE
from tests.factories import NO_TRUST_TOML, QUIET_SERVICE_TOML
from tests.helpers.clock import python_command
from tests.servers.smtp import SmtpServer

COORDINATOR = "member.support@example.gov.uk"
# Issue #16: with `mailbridge run` beside the console, the link reaches the SMTP server
# within 5 seconds of asking for it.
LINK_WITHIN = 5.0


def write_config(home: Path, smtp_url: str, database_url: str) -> Path:
    """The embedded default's mailbox, the test's SMTP server and the test's database."""
    for sub in ("new", "cur", "tmp"):
        (home / "mailbox" / sub).mkdir(parents=True)
    config = home / "config.toml"
    config.write_text(
        f"""
[mailbox]
url = "maildir:./mailbox"
poll_seconds = 300
[smtp]
url = "{smtp_url}"
from_address = "enquiries@example.gov.uk"
[database]
url = "{database_url}"
[storage]
data_dir = "./data"
{NO_TRUST_TOML}{QUIET_SERVICE_TOML}
[[coordinators]]
name = "Member Support"
email = "{COORDINATOR}"
""",
        encoding="utf-8",
    )
    return config


def wait_for(what: str, ready, log: Path, seconds: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not ready():
        assert time.monotonic() < deadline, f"no {what}:\n{log.read_text(errors='replace')}"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_sign_in_link_reaches_the_smtp_server_through_the_running_service(
    tmp_path: Path, migrated_db_url: str, smtp_server: SmtpServer
) -> None:
    smtp_url = f"smtp://{smtp_server.host}:{smtp_server.port}"
    config_path = write_config(tmp_path, smtp_url, migrated_db_url)
    config = load_config(config_path)
    log = tmp_path / "run.log"
    with open(log, "w") as output:
        service = subprocess.Popen(
            python_command("mailbridge", "run", "--config", str(config_path)),
            stdout=output, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    engine = make_engine(config.database.url)
    try:
        # The service's delivery process opens its door (a socket in data_dir/wake/) ...
        wait_for("courier socket", lambda: any(folder(config).glob("*.sock")), log)
        assert ring_courier(config) == 1  # ... and this process can ring it
        app = create_app(config, engine)
        with TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False) as web:
            web.get("/sign-in")
            asked = time.monotonic()
            answer = web.post(
                "/sign-in/link",
                data={"email": COORDINATOR, "csrf": web.cookies[CSRF_COOKIE], "next": "/"},
            )
        assert answer.status_code == 200, answer.text
        assert "Check your email" in answer.text
        wait_for(
            f"sign-in email at the SMTP server within {LINK_WITHIN:g} s of asking",
            lambda: smtp_server.messages,
            log,
            seconds=asked + LINK_WITHIN - time.monotonic(),
        )
        took = time.monotonic() - asked
        assert took <= LINK_WITHIN, f"the link reached the SMTP server {took:.2f} s after asking"
    finally:
        service.terminate()
        code = service.wait(timeout=30)
        engine.dispose()
    [sent] = smtp_server.messages
    assert sent.rcpt_tos == [COORDINATOR]
    message = message_from_bytes(sent.content, policy=policy.default)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "http://127.0.0.1:8080/sign-in/link?token=" in text
    assert code == 0, log.read_text(errors="replace")
    assert "Traceback" not in log.read_text(errors="replace")


def test_ringing_with_no_courier_listening_rings_nobody_and_sweeps_dead_doors(
    tmp_path: Path,
) -> None:
    config = load_config(
        write_config(tmp_path, "smtp://127.0.0.1:25", f"sqlite:///{tmp_path / 'mb.db'}")
    )
    assert ring_courier(config) == 0  # no wake folder at all: no courier has ever run here

    # A courier that died leaves its socket file behind: nobody answers there any more.
    folder(config).mkdir(parents=True)
    stale = folder(config) / "4242.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(stale))
    dead.close()
    assert stale.exists()

    assert ring_courier(config) == 0
    assert not stale.exists()
