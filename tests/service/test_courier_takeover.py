"""A service killed mid-delivery, whole process group at once, and restarted: its courier's
claims are taken over at once, not after the five-minute lease (issue #15, item 3).

Real Dovecot in, `mailbridge run` in a session of its own (so one killpg reaches the daemon,
its parse workers and its courier together, as a power cut or the OOM killer of a cgroup
would), a real aiosmtpd out that takes 30 ms over each message, so that the kill falls in
the middle of delivery; on SQLite and on PostgreSQL, with the default lease_seconds (300).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import func, text
from sqlmodel import Session, select

from mailbridge.store.db import make_engine
from mailbridge.store.models import Case, OutboxMessage, OutboxStatus, utcnow
from tests.servers.database import DATABASES
from tests.servers.dovecot import DovecotServer
from tests.servers.service import Lines, terminate
from tests.servers.smtp import SmtpServer
from tests.service.test_daemon import enquiry, env, mailbridge, write_config

TOTAL = 60
KILL_AFTER = 15  # acknowledgements accepted before the kill
# The acceptance's bound (issue #15): every acknowledgement within 10 s of the restart. On
# this machine it takes about 2 s; waiting out the lease would take 300.
RECOVERY_SECONDS = 10.0


def received(server: SmtpServer) -> Counter[str]:
    return Counter(
        str(message_from_bytes(m.content, policy=policy.default)["Message-ID"]).strip("<>")
        for m in server.messages
    )


def service(config: Path, imap: DovecotServer) -> subprocess.Popen[str]:
    return subprocess.Popen(
        mailbridge("run", "--config", str(config)), env=env(imap), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("database", DATABASES)
def test_after_a_sigkill_of_the_whole_service_every_acknowledgement_goes_within_10_s(
    database: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    imap_mailbox: DovecotServer,
    smtp_slow_server: SmtpServer,
) -> None:
    server = smtp_slow_server
    url = request.getfixturevalue("pg_migrated_url") if database == "postgres" else None
    config = write_config(
        tmp_path, imap_mailbox, server, mailbox_extra="poll_seconds = 300", database_url=url,
        # 60 enquiries from one councillor at once: a flood (cases/floods.py) unless allowed.
        extra="[limits]\nnew_cases_per_sender_per_hour = 1000\nnew_cases_per_sender_per_day = 1000",
    )  # fmt: skip
    engine = make_engine(url or f"sqlite:///{tmp_path / 'mailbridge.db'}")
    with imap_mailbox.client() as client:
        for n in range(TOTAL):
            client.append("INBOX", enquiry(n)[1], msg_time=datetime.now(UTC))

    first = service(config, imap_mailbox)
    first_log = Lines(first)
    deadline = time.monotonic() + 60
    while len(server.messages) < KILL_AFTER:
        assert first.poll() is None and time.monotonic() < deadline, first_log.text
        time.sleep(0.002)
    os.killpg(first.pid, signal.SIGKILL)  # the daemon, its parse workers and its courier
    first.wait()
    accepted_before = len(server.messages)
    with Session(engine) as session:
        leased = session.exec(
            select(func.count()).where(
                OutboxMessage.status == OutboxStatus.PENDING,
                OutboxMessage.next_attempt_at > utcnow(),
                text("claimed_by IS NOT NULL"),
            )
        ).one()
    assert leased > 0, "the kill fell after delivery: nothing was left to take over"

    restarted = time.monotonic()
    second = service(config, imap_mailbox)
    second_log = Lines(second)
    try:
        while len(received(server)) < TOTAL:
            waited = time.monotonic() - restarted
            assert waited < RECOVERY_SECONDS, (
                f"{len(received(server))} of {TOTAL} acknowledgements {waited:.1f} s after "
                f"the restart\n{second_log.text}"
            )
            time.sleep(0.01)
        recovered = time.monotonic() - restarted
    finally:
        code = terminate(second)
    assert code == 0, second_log.text
    print(f"{leased} leased at the kill; all {TOTAL} acknowledgements {recovered:.1f} s later")

    with Session(engine) as session:
        cases = session.exec(select(func.count()).select_from(Case)).one()
        outbox = {r.message_id: r.status for r in session.exec(select(OutboxMessage)).all()}
    engine.dispose()
    assert cases == TOTAL
    assert len(outbox) == TOTAL and set(outbox.values()) == {"sent"}
    got = received(server)
    assert set(got) == set(outbox)
    # Once each, or once more where the kill fell between the server's acceptance and the
    # commit: the email in flight, with the same Message-ID.
    assert sum(got.values()) - len(got) <= 1, got.most_common(3)
    assert accepted_before < TOTAL
    assert "took over" in second_log.text and "claimed by a sender that died" in second_log.text
    assert "Traceback" not in second_log.text, second_log.text
