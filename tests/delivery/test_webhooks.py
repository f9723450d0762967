"""Webhooks: case events POSTed to a real HTTP receiver on loopback, started by the test,
on each database. The receiver checks signatures with the scheme docs/webhooks.md gives;
the decisions (which events, retry or give up, backoff) are table-tested."""

from __future__ import annotations

import hashlib
import hmac
import json
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as dt_time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from mailbridge.cases import assignment, coordinator
from mailbridge.cases.records import add_event
from mailbridge.config import Config, Webhook, load_config
from mailbridge.deadlines import overdue, run
from mailbridge.delivery import webhooks
from mailbridge.delivery.courier import Courier
from mailbridge.delivery.webhooks import Verdict, backoff, events_for, verdict
from mailbridge.errors import ConfigError
from mailbridge.service.checks import Finding, Status, check_webhooks
from mailbridge.store.db import make_engine, transaction
from mailbridge.store.models import Case, WebhookDelivery, WebhookStatus, utcnow
from tests.helpers.council import (
    PRIYA,
    REF,
    SAM,
    Council,
    build_council,
    council_cli,
    reply,
    write_council_config,
)
from tests.test_config import ROOT, commented_block
from tests.web.conftest import make_web

pytestmark = pytest.mark.timeout(120)

SECRET = "a-receivers-shared-secret-of-some-length"
SECRET_ENV = "MAILBRIDGE_TEST_WEBHOOK_SECRET"


# --- a real receiver -------------------------------------------------------------------


@dataclass
class Receiver:
    """An HTTP server on loopback that verifies each POST as a receiving system would, and
    answers with the codes it is given (then 204)."""

    port: int
    answers: list[int] = field(default_factory=list)
    got: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    # Given, each request is read and then held unanswered until the event is set.
    hold: threading.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/mailbridge"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "valid": verified(self.headers, body),
                    }
                )
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                code = receiver.answers.pop(0) if receiver.answers else 204
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.got]


def documented_check() -> Callable[[str, Any, bytes], bool]:
    """The receiver's check exactly as docs/webhooks.md prints it, in Python."""
    text = (ROOT / "docs" / "webhooks.md").read_text(encoding="utf-8")
    [code] = re.findall(r"```python\n(.*?)```", text, re.S)
    scope: dict[str, Any] = {}
    exec(compile(code, "docs/webhooks.md", "exec"), scope)
    return scope["verified"]


DOCUMENTED = documented_check()


def verified(headers: Any, body: bytes) -> bool:
    return DOCUMENTED(SECRET, headers, body)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(0)
    r.start()
    yield r
    r.stop()


def council_with(tmp_path: Path, url: str, receiver_url: str, **hook: Any) -> Council:
    engine = make_engine(url)
    hooks = [{"name": "crm", "url": receiver_url, "secret_env": SECRET_ENV, **hook}]
    return build_council(tmp_path, engine, webhooks=hooks)


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


def rows(engine: Engine) -> list[WebhookDelivery]:
    with Session(engine) as session:
        return list(session.exec(select(WebhookDelivery).order_by(col(WebhookDelivery.id))))


def later(hours: float = 0, seconds: float = 0) -> Any:
    moment = utcnow() + timedelta(hours=hours, seconds=seconds)
    return lambda: moment


# --- delivered once, signed ---------------------------------------------------------------


@pytest.mark.usefixtures("secret")
def test_an_opened_case_is_posted_once_signed(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver
) -> None:
    council = council_with(tmp_path, migrated_db_url, receiver.url)
    council.open_pothole_case()  # the daemon's pass delivers mail, then webhooks
    [got] = receiver.got
    assert got["valid"] and got["path"] == "/hooks/mailbridge"
    event = json.loads(got["body"])
    assert event["event"] == "opened" and event["change"] == "case_opened"
    assert got["headers"]["X-Mailbridge-Event-Id"] == event["id"]
    assert got["headers"]["X-Mailbridge-Event"] == "opened"
    case = event["case"]
    assert case["reference"] == REF and case["status"] == "new" and case["lead_officer"] is None
    assert case["respond_by"] and case["due"] == case["respond_by"]
    assert "tyres" not in got["body"].decode()  # never a message's text
    [row] = rows(council.engine)
    assert row.status == WebhookStatus.DELIVERED and row.attempts == 1
    assert webhooks.deliver_due(council.engine, council.services.config).tried == 0
    council.run()
    assert len(receiver.got) == 1


@pytest.mark.usefixtures("secret")
def test_assigned_responded_and_completed_each_reach_the_receiver(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver
) -> None:
    council = council_with(tmp_path, migrated_db_url, receiver.url)
    council.open_pothole_case()
    council.assign(PRIYA)
    coordinator.set_status(council.services, REF, "completed", actor="coordinator (test)")
    council.run()
    kinds = [(e["event"], e["change"]) for e in receiver.events()]
    assert kinds == [
        ("opened", "case_opened"),
        ("assigned", "assigned"),
        ("completed", "status_changed"),
    ]
    assigned = receiver.events()[1]["case"]
    assert assigned["lead_officer"]["email"] == PRIYA and assigned["status"] == "in_progress"
    assert all(r["valid"] for r in receiver.got)
    assert len({e["id"] for e in receiver.events()}) == 3


@pytest.mark.usefixtures("secret")
def test_an_officers_emailed_holding_reply_and_response_are_responded_then_completed(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver
) -> None:
    council = council_with(tmp_path, migrated_db_url, receiver.url)
    sent = council.assigned_pothole()
    council.deliver(reply(sent[PRIYA], PRIYA, "#holding\n\nThe contractor visits on Friday."))
    council.deliver(reply(sent[PRIYA], PRIYA, "The pothole was filled this morning."))
    said = [(e["event"], e["change"], e["case"]["status"]) for e in receiver.events()]
    assert said[2:] == [
        ("responded", "holding_reply", "in_progress"),
        ("responded", "responded", "completed"),
        ("completed", "responded", "completed"),
    ]
    assert "contractor" not in b"".join(r["body"] for r in receiver.got).decode()


@pytest.mark.usefixtures("secret")
def test_the_courier_process_delivers_webhooks_after_the_mail(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver
) -> None:
    council = council_with(tmp_path, migrated_db_url, receiver.url)
    council.open_pothole_case()
    council.engine.dispose()  # no pooled connection crosses the fork
    courier = Courier(council.services.config)
    courier.start()
    try:
        coordinator.set_status(council.services, REF, "completed", actor="coordinator (test)")
        courier.wake()
        assert wait_for(lambda: len(receiver.got) == 2), "the courier sent no webhook"
    finally:
        courier.stop(timeout=10)
    assert courier.exitcode == 0
    assert [e["event"] for e in receiver.events()] == ["opened", "completed"]
    assert [r.status for r in rows(council.engine)] == [WebhookStatus.DELIVERED] * 2


@pytest.mark.usefixtures("secret")
def test_an_assignment_in_the_browser_makes_the_same_webhook_as_the_command(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver
) -> None:
    engine = make_engine(migrated_db_url)
    hooks = [{"name": "crm", "url": receiver.url, "secret_env": SECRET_ENV}]
    web = make_web(tmp_path, engine, webhooks=hooks)
    try:
        reference = web.pothole()
        client, csrf = web.signed_in("coordinator")
        page = client.get(f"/cases/{reference}").text
        [version] = re.findall(r'name="version" value="([^"]+)"', page)[:1]
        answer = client.post(
            f"/cases/{reference}/assign",
            data={"lead": PRIYA, "also": [""], "csrf": csrf, "version": version},
        )
        assert answer.status_code == 303, answer.text
        [opened, assigned] = rows(engine)
        assert (opened.event, assigned.event) == ("opened", "assigned")
        webhooks.deliver_due(engine, web.config)
        event = receiver.events()[-1]
        assert event["event"] == "assigned" and event["case"]["lead_officer"]["email"] == PRIYA
        assert receiver.got[-1]["valid"]
    finally:
        for c in web.clients:
            c.close()
        engine.dispose()


@pytest.mark.usefixtures("secret")
def test_the_body_shows_the_case_as_its_transaction_left_it(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver
) -> None:
    """A reassignment that resets the deadline records "reassigned" before the reset: the
    receiver still gets the new deadline and lead officer."""
    council = council_with(tmp_path, migrated_db_url, receiver.url)
    council.open_pothole_case()
    council.assign(PRIYA)
    before = council.case().response_due
    assignment.assign(
        council.services, REF, SAM, actor="coordinator (test)", reassign=True, reset_deadline=True
    )
    council.run()
    after = council.case().response_due
    assert after != before
    last = receiver.events()[-1]
    assert (last["event"], last["change"]) == ("assigned", "reassigned")
    assert last["case"]["respond_by"] == after.isoformat() == last["case"]["due"]
    assert last["case"]["lead_officer"]["email"] == SAM
    assert receiver.got[-1]["valid"]


@pytest.mark.usefixtures("secret")
def test_a_receiver_hears_only_the_events_it_asked_for(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver
) -> None:
    council = council_with(tmp_path, migrated_db_url, receiver.url, events=["assigned"])
    council.open_pothole_case()
    council.assign(PRIYA)
    assert [e["event"] for e in receiver.events()] == ["assigned"]


# --- retried ------------------------------------------------------------------------------


@pytest.mark.usefixtures("secret")
def test_a_500_is_retried_later_with_the_same_event_id(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver
) -> None:
    receiver.answers = [500]
    council = council_with(tmp_path, migrated_db_url, receiver.url)
    council.open_pothole_case()
    [row] = rows(council.engine)
    assert row.status == WebhookStatus.PENDING and row.attempts == 1
    assert row.last_error == "HTTP 500"
    config = council.services.config
    assert webhooks.deliver_due(council.engine, config).tried == 0  # not due yet
    done = webhooks.deliver_due(council.engine, config, now=later(hours=1))
    assert done.delivered == 1
    first, second = receiver.got
    assert first["body"] == second["body"] and second["valid"]
    assert first["headers"]["X-Mailbridge-Event-Id"] == second["headers"]["X-Mailbridge-Event-Id"]
    [row] = rows(council.engine)
    assert row.status == WebhookStatus.DELIVERED and row.attempts == 2


@pytest.mark.usefixtures("secret")
def test_a_receiver_that_is_down_gets_the_event_once_it_is_up(
    tmp_path: Path, migrated_db_url: str
) -> None:
    down = Receiver(0)
    down.start()  # learn a free port, then close it: nothing listens there
    port = down.port
    down.stop()
    council = council_with(tmp_path, migrated_db_url, f"http://127.0.0.1:{port}/in")
    council.open_pothole_case()
    council.assign(PRIYA)
    waiting = rows(council.engine)
    assert [r.status for r in waiting] == [WebhookStatus.PENDING] * 2
    assert [r.attempts for r in waiting] == [1, 1]
    assert "Connection refused" in (waiting[0].last_error or "")
    up = Receiver(port)
    up.start()
    try:
        done = webhooks.deliver_due(council.engine, council.services.config, now=later(hours=2))
        assert done.delivered == 2
        assert [e["event"] for e in up.events()] == ["opened", "assigned"]
        assert all(r["valid"] for r in up.got)
    finally:
        up.stop()


@pytest.mark.usefixtures("secret")
def test_a_refusing_receiver_fails_after_three_tries_and_can_be_retried(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver
) -> None:
    receiver.answers = [401, 401, 401]
    council = council_with(tmp_path, migrated_db_url, receiver.url)
    council.open_pothole_case()
    config = council.services.config
    for hours in (1, 3):
        webhooks.deliver_due(council.engine, config, now=later(hours=hours))
    [row] = rows(council.engine)
    assert row.status == WebhookStatus.FAILED and row.attempts == 3
    assert row.last_error == "refused 3 times: HTTP 401"
    assert webhooks.deliver_due(council.engine, config, now=later(hours=30)).tried == 0
    assert webhooks.retry_failed(council.engine) == 1
    assert webhooks.deliver_due(council.engine, config).delivered == 1
    assert len(receiver.got) == 4


def test_without_its_secret_a_receivers_events_wait_unsent(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    council = council_with(tmp_path, migrated_db_url, receiver.url)
    council.open_pothole_case()
    [row] = rows(council.engine)
    assert (row.status, row.attempts) == (WebhookStatus.PENDING, 0) and receiver.got == []
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert webhooks.deliver_due(council.engine, council.services.config).delivered == 1
    assert receiver.got[0]["valid"]


# --- never for a change that rolled back; never two deliverers at once -----------------------


@pytest.mark.usefixtures("secret")
def test_a_change_that_rolls_back_sends_nothing(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver
) -> None:
    council = council_with(tmp_path, migrated_db_url, receiver.url)
    council.open_pothole_case()
    before = len(receiver.got)
    with pytest.raises(RuntimeError), transaction(council.engine) as session:
        case = session.exec(select(Case).where(Case.reference == REF)).one()
        add_event(session, case.id, "assigned", "lead officer Priya Shah")
        assert len(webhooks.listeners(session)) == 1
        raise RuntimeError("the change fails after its event was recorded")
    assert len(rows(council.engine)) == 1
    assert webhooks.deliver_due(council.engine, council.services.config).tried == 0
    assert len(receiver.got) == before


@pytest.mark.usefixtures("secret")
def test_a_claimed_row_is_nobody_elses_until_its_lease_ends(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver
) -> None:
    receiver.stop()  # nothing delivered during the pass: the row waits
    council = council_with(tmp_path, migrated_db_url, receiver.url)
    council.open_pothole_case()
    moment = later(hours=1)()
    first = webhooks.claim(council.engine, moment)
    assert first is not None
    assert webhooks.claim(council.engine, moment) is None
    lease_over = moment + timedelta(seconds=webhooks.LEASE_SECONDS + 1)
    again = webhooks.claim(council.engine, lease_over)
    assert again is not None and again.id == first.id and again.attempts == first.attempts + 1


def _deliver_in_child(url: str, config: Config) -> None:
    """A deliverer in a process of its own, as the courier is."""
    engine = make_engine(url)
    webhooks.deliver_due(engine, config, now=later(hours=1))


@pytest.mark.usefixtures("secret")
def test_a_deliverer_killed_mid_request_leaves_the_event_to_be_sent_again_once(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver
) -> None:
    receiver.answers = [500]  # the pass's own attempt fails: the row waits for the child
    council = council_with(tmp_path, migrated_db_url, receiver.url)
    council.open_pothole_case()
    receiver.hold = threading.Event()
    council.engine.dispose()  # no pooled connection may cross into the child
    child = multiprocessing.get_context("fork").Process(
        target=_deliver_in_child, args=(migrated_db_url, council.services.config)
    )
    child.start()
    try:
        assert wait_for(lambda: len(receiver.got) == 2), "the child's request never came"
        os.kill(child.pid or 0, signal.SIGKILL)  # mid-request: no answer read, no mark made
        child.join(10)
    finally:
        receiver.hold.set()
    [row] = rows(council.engine)
    assert row.status == WebhookStatus.PENDING and row.attempts == 2
    config = council.services.config
    assert webhooks.deliver_due(council.engine, config, now=later(hours=1)).tried == 0  # leased
    after_lease = later(hours=1, seconds=webhooks.LEASE_SECONDS + 5)
    assert webhooks.deliver_due(council.engine, config, now=after_lease).delivered == 1
    assert webhooks.deliver_due(council.engine, config, now=later(hours=30)).tried == 0
    ids = [r["headers"]["X-Mailbridge-Event-Id"] for r in receiver.got]
    assert len(ids) == 3 and len(set(ids)) == 1  # one event, which the receiver dedupes on
    assert all(r["valid"] for r in receiver.got)


def wait_for(condition: Any, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.usefixtures("secret")
def test_two_deliverers_at_once_send_each_event_once(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver
) -> None:
    council = council_with(tmp_path, migrated_db_url, receiver.url)
    council.open_pothole_case()
    with transaction(council.engine) as session:
        case = session.exec(select(Case).where(Case.reference == REF)).one()
        for _ in range(16):
            add_event(session, case.id, "assigned", "lead officer Priya Shah")
    config = council.services.config
    threads = [
        threading.Thread(target=webhooks.deliver_due, args=(council.engine, config))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ids = [r["headers"]["X-Mailbridge-Event-Id"] for r in receiver.got]
    assert len(ids) == 17 and len(set(ids)) == 17
    assert {r.status for r in rows(council.engine)} == {WebhookStatus.DELIVERED}


# --- overdue, from the deadlines tick ---------------------------------------------------------


@pytest.mark.usefixtures("secret")
def test_a_case_past_its_deadline_is_overdue_once(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver
) -> None:
    council = council_with(tmp_path, migrated_db_url, receiver.url, events=["overdue"])
    council.open_pothole_case()
    council.assign(PRIYA)
    with Session(council.engine) as session:
        due = session.exec(select(Case.response_due).where(Case.reference == REF)).one()
    services = council.services
    assert overdue.queue_overdue(services, due) == 0  # due today is not yet overdue
    # The schedule's tick queues it, the day after the deadline (council time).
    zone = services.calendar.zone
    day_after = datetime.combine(due + timedelta(days=1), dt_time(12), tzinfo=zone)
    assert run.run_due(services, day_after).overdue == 1
    assert run.run_due(services, day_after + timedelta(days=1)).overdue == 0
    assert overdue.queue_overdue(services, due + timedelta(days=5)) == 0
    webhooks.deliver_due(council.engine, services.config)
    [event] = receiver.events()
    assert event["event"] == "overdue" and event["id"] == f"overdue:{REF}:{due.isoformat()}"
    assert event["case"]["due"] == due.isoformat() and receiver.got[0]["valid"]
    coordinator.extend(services, REF, 3, "awaiting the contractor", actor="coordinator (test)")
    assert overdue.queue_overdue(services, due + timedelta(days=1)) == 0  # extended: not yet
    assert overdue.queue_overdue(services, due + timedelta(days=30)) == 1  # a second deadline


# --- the decisions, table-tested --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "events"),
    [
        ("case_opened", "new", ("opened",)),
        ("assigned", "in_progress", ("assigned",)),
        ("reassigned", "in_progress", ("assigned",)),
        ("responded", "completed", ("responded", "completed")),
        ("holding_reply", "in_progress", ("responded",)),
        ("replied", "in_progress", ("responded",)),
        ("replied", "completed", ("responded",)),  # a reply to a case completed before
        ("status_changed", "completed", ("completed",)),
        ("status_changed", "in_progress", ()),
        ("internal_note", "in_progress", ()),
        ("reopened", "in_progress", ()),
    ],
)
def test_which_case_events_a_receiver_hears_about(
    kind: str, status: str, events: tuple[str, ...]
) -> None:
    assert events_for(kind, status) == events


@pytest.mark.parametrize(
    ("status", "attempts", "age_hours", "outcome"),
    [
        (200, 1, 0, "delivered"),
        (204, 5, 23, "delivered"),
        (500, 1, 0, "retry"),
        (503, 9, 23, "retry"),
        (None, 1, 0, "retry"),  # connection refused, timed out
        (408, 5, 1, "retry"),
        (429, 5, 1, "retry"),
        (400, 1, 0, "retry"),
        (401, 2, 0, "retry"),
        (404, 3, 0, "failed"),  # a 4xx gives up after FOUR_XX_ATTEMPTS
        (302, 1, 0, "retry"),
        (301, 3, 0, "failed"),  # as does a redirect, never followed
        (500, 2, 24, "failed"),  # and anything after GIVE_UP_HOURS
        (None, 40, 25, "failed"),
    ],
)
def test_after_an_attempt_retry_or_give_up(
    status: int | None, attempts: int, age_hours: float, outcome: str
) -> None:
    said = verdict(status, "why", attempts, timedelta(hours=age_hours), rand=lambda: 0.5)
    assert said.outcome == outcome
    assert (said.delay > 0) == (outcome == "retry")


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 15, 30), (2, 30, 60), (3, 60, 120), (8, 1800, 3600), (30, 1800, 3600)],
)
def test_backoff_doubles_to_a_ceiling_with_jitter_in_its_upper_half(
    attempts: int, low: float, high: float
) -> None:
    assert backoff(attempts, rand=lambda: 0.0) == low
    assert backoff(attempts, rand=lambda: 1.0) == high


def test_the_documented_check_refuses_a_changed_body_an_old_request_or_another_secret() -> None:
    body = b'{"id":"x"}'
    now = int(time.time())
    good = webhooks.headers(SECRET.encode(), body, "x", "opened", now)
    assert verified(good, body)
    assert not verified(good, body + b" ")
    assert not verified(webhooks.headers(SECRET.encode(), body, "x", "opened", now - 600), body)
    assert not verified(webhooks.headers(b"another secret", body, "x", "opened", now), body)


def test_the_signature_is_hmac_sha256_of_the_timestamp_dot_body() -> None:
    body = b'{"id":"x"}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhooks.signature(b"k", 1_700_000_000, body) == "sha256=" + expected
    assert webhooks.signature(b"k", 1_700_000_001, body) != "sha256=" + expected


@pytest.mark.parametrize(
    "timestamp", [None, "", "soon", "-1", "1e9", str(int(time.time()) - 301)], ids=repr
)
def test_the_documented_check_refuses_a_missing_odd_or_stale_timestamp(
    timestamp: str | None,
) -> None:
    """The receiver's check as the docs print it answers False, never raises, for what an
    attacker could send; a fresh, genuine request passes."""
    body = b'{"id":"x"}'
    now = int(time.time())
    good = {
        "X-Mailbridge-Timestamp": str(now),
        "X-Mailbridge-Signature": webhooks.signature(SECRET.encode(), now, body),
    }
    assert verified(good, body)
    headers = dict(good)
    if timestamp is None:
        del headers["X-Mailbridge-Timestamp"]
    else:
        headers["X-Mailbridge-Timestamp"] = timestamp
    assert not verified(headers, body)


def test_verdict_keeps_the_receivers_words() -> None:
    assert verdict(503, "HTTP 503", 1, timedelta(0), rand=lambda: 0.0) == Verdict(
        "retry", 15.0, "HTTP 503"
    )


# --- seen and retried by the operator ---------------------------------------------------------


@pytest.mark.usefixtures("secret")
def test_check_and_the_cli_show_a_failed_webhook_and_queue_it_again(
    tmp_path: Path, migrated_db_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.answers = [410, 410, 410]
    council = council_with(tmp_path, migrated_db_url, receiver.url)
    council.open_pothole_case()
    for hours in (1, 3):
        webhooks.deliver_due(council.engine, council.services.config, now=later(hours=hours))
    [found] = check_webhooks(council.services.config)
    assert found.status == Status.WARNING and found.found == "reachable; 0 waiting, 1 failed"
    assert "mailbridge webhooks retry --receiver crm" in found.advice[0]
    hooks = f'[[webhooks]]\nname = "crm"\nurl = "{receiver.url}"\nsecret_env = "{SECRET_ENV}"\n'
    config = write_council_config(tmp_path, migrated_db_url, hooks)
    listed = council_cli(config, "webhooks", "list")
    assert listed.exit_code == 0, listed.output
    assert "failed" in listed.output and REF in listed.output and "HTTP 410" in listed.output
    wrong = council_cli(config, "webhooks", "retry", "--receiver", "highways")
    assert wrong.exit_code != 0 and "no [[webhooks]] entry is named highways" in wrong.output
    retried = council_cli(config, "webhooks", "retry", "--receiver", "crm")
    assert retried.exit_code == 0 and "1 failed webhooks queued again" in retried.output
    assert webhooks.deliver_due(council.engine, council.services.config).delivered == 1
    [found] = check_webhooks(council.services.config)
    assert found == Finding(
        "webhooks", f"crm {receiver.url}", Status.OK, "reachable; 0 waiting, 0 failed"
    )
    assert "every webhook has been delivered" in council_cli(config, "webhooks", "list").output
    monkeypatch.delenv(SECRET_ENV)
    [found] = check_webhooks(council.services.config)
    assert found.status == Status.FAILED and SECRET_ENV in found.advice[0]
    receiver.stop()
    monkeypatch.setenv(SECRET_ENV, SECRET)
    [found] = check_webhooks(council.services.config)
    assert found.status == Status.WARNING and found.found.startswith("unreachable")
    assert not receiver.got[4:]  # check sent nothing


# --- the config ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ('url = "https://crm.example.gov.uk/in"', "set one of secret_env or secret_file"),
        (
            'url = "https://crm.example.gov.uk/in"\nsecret_env = "A"\nsecret_file = "b"',
            "set one of secret_env or secret_file",
        ),
        ('url = "ftp://crm"\nsecret_env = "A"', "webhooks.0.url: String should match"),
        ('url = "https://crm"\nsecret_env = "A"\nevents = ["closed"]', "webhooks.0.events.0"),
        ('url = "https://crm"\nsecret_env = "A"\nevents = []', "events is empty"),
        ('url = "https://crm"\nsecret = "inline"', "webhooks.0.secret: unknown key"),
    ],
)
def test_a_bad_webhook_entry_is_refused_in_one_line(tmp_path: Path, entry: str, error: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[[webhooks]]\nname = "crm"\n{entry}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert error in str(refused.value) and "\n" not in str(refused.value)


def test_webhook_names_differ_and_every_event_is_the_default(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    entry = '[[webhooks]]\nname = "crm"\nurl = "https://crm.example.gov.uk/in"\nsecret_env = "A"\n'
    path.write_text(entry, encoding="utf-8")
    [hook] = load_config(path).webhooks
    assert hook.events == ["opened", "assigned", "responded", "completed", "overdue"]
    path.write_text(entry * 2, encoding="utf-8")
    with pytest.raises(ConfigError, match="crm is used twice"):
        load_config(path)


def test_the_examples_webhook_block_loads_once_uncommented(tmp_path: Path) -> None:
    text = (ROOT / "config.example.toml").read_text()
    path = tmp_path / "config.toml"
    path.write_text(commented_block(text, "[[webhooks]]"), encoding="utf-8")
    [hook] = load_config(path).webhooks
    assert (hook.name, hook.secret_env) == ("highways", "MAILBRIDGE_WEBHOOK_HIGHWAYS")
    assert hook.events == ["opened", "completed", "overdue"]
    for key in Webhook.model_fields:
        assert re.search(rf"^# (# )?{key} = |or {key} = ", text, re.M), f"{key} not in the example"
