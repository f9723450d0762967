"""The incident rules of service/alerts.py, on SQLite and PostgreSQL: one alert when a
condition starts, one all-clear once it has been gone CLEAR_AFTER, nothing while it flaps,
whichever daemon or restart sees it; and health.json, which `mailbridge check` reads.

The Watch is told the moments (`now=`), and the process's clock moves with them: no test
here waits on a clock.
"""

from __future__ import annotations

import json
import stat
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from mailbridge.config import Config
from mailbridge.delivery import outbox
from mailbridge.delivery.courier import SmtpHealth
from mailbridge.service.alerts import (
    CLEAR_AFTER,
    Condition,
    Kind,
    Watch,
    alert_recipients,
    read_health,
)
from mailbridge.service.checks import Status, check_health
from mailbridge.services import Services
from mailbridge.store.db import transaction
from mailbridge.store.models import Incident, OutboxMessage, OutboxStatus
from tests.factories import make_services
from tests.helpers.clock import clock_at

MAILBOX = "imaps://enquiries@mail.example.gov.uk:993/INBOX"  # as its source names it
MAILBOX_URL = "imaps://enquiries@mail.example.gov.uk/"
SMTP_OK = SmtpHealth(last_send=None, failing=None, failing_since=None, detail="")
# The alerts' own mail waits in these tests' outbox (nobody delivers it): only the tests of
# the outbox rule let that count.
NOT_THE_OUTBOX = {"outbox_stuck_minutes": 100_000}


def minutes(start: datetime, n: float) -> datetime:
    return start + timedelta(minutes=n)


def review(w: Watch, moment: datetime, smtp: SmtpHealth) -> None:
    """The Watch's review at `moment`, the process's clock there too: the mail it queues is
    stamped then, as in a service running at that moment."""
    with clock_at(moment):
        w.review(moment, smtp)


def settle(w: Watch, moment: datetime, smtp: SmtpHealth = SMTP_OK) -> None:
    """Reviewed at `moment` and again CLEAR_AFTER later: what is gone by then clears."""
    review(w, moment, smtp)
    review(w, moment + CLEAR_AFTER, smtp)


def services_for(tmp_path: Path, engine: Engine, **alerts: Any) -> Services:
    return make_services(tmp_path, engine, alerts={**NOT_THE_OUTBOX, **alerts})


def watch(services: Services, start: datetime, mailbox: str = MAILBOX) -> Watch:
    return Watch(services, mailbox, lambda: start)


def alerts(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(OutboxMessage)
                .where(col(OutboxMessage.kind).in_(["alert", "alert_cleared"]))
                .order_by(col(OutboxMessage.id))
            ).all()
        )


def kinds(engine: Engine) -> list[str]:
    return [a.kind for a in alerts(engine)]


def incidents(engine: Engine) -> list[Incident]:
    with Session(engine) as session:
        return list(session.exec(select(Incident).order_by(col(Incident.id))).all())


def text_of(row: OutboxMessage) -> str:
    msg = message_from_bytes(row.raw, policy=policy.default)
    return str(msg["Subject"]) + "\n" + msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_a_refused_login_alerts_once_and_clears_once_however_it_flaps(
    tmp_path: Path, engine: Engine, fixed_clock: datetime
) -> None:
    services = services_for(tmp_path, engine)
    t0 = fixed_clock
    w = watch(services, t0)
    w.fetched(t0)
    w.mailbox_refused("IMAP login to mail:993 as enquiries failed: Authentication failed", t0)
    review(w, minutes(t0, 1), SMTP_OK)
    review(w, minutes(t0, 2), SMTP_OK)
    [alert] = alerts(engine)
    assert alert.kind == "alert" and alert.recipients == "member.support@example.gov.uk"
    words = text_of(alert)
    assert "mailbridge alert: the mail server refuses mailbridge's login" in words
    assert "Entra ID client secret in [mailbox]" in words and "renew it" in words
    assert MAILBOX in words and "Authentication failed" in words
    assert "Tuesday 1 December 2026 at 10:00" in words  # since when, in the council's zone

    # It comes and goes: a fetch, a refusal again, a fetch; nothing new is sent.
    w.fetched(minutes(t0, 3))
    review(w, minutes(t0, 4), SMTP_OK)
    w.mailbox_refused("refused again", minutes(t0, 5))
    review(w, minutes(t0, 6), SMTP_OK)
    w.fetched(minutes(t0, 7))
    review(w, minutes(t0, 8), SMTP_OK)
    assert kinds(engine) == ["alert"]
    review(w, minutes(t0, 8) + CLEAR_AFTER, SMTP_OK)  # gone long enough: over
    review(w, minutes(t0, 30), SMTP_OK)
    assert kinds(engine) == ["alert", "alert_cleared"]
    [incident] = incidents(engine)
    assert incident.kind == Kind.MAILBOX_LOGIN_REFUSED and incident.scope == MAILBOX
    assert incident.cleared_at is not None
    cleared = text_of(alerts(engine)[1])
    assert "all clear" in cleared and "Lasted:    13 minutes" in cleared


def test_no_fetch_for_the_configured_minutes_alerts_once_then_clears(
    tmp_path: Path, engine: Engine, fixed_clock: datetime
) -> None:
    services = services_for(tmp_path, engine, no_fetch_minutes=30)
    t0 = fixed_clock
    w = watch(services, t0)
    w.fetched(t0)
    review(w, minutes(t0, 29), SMTP_OK)
    assert alerts(engine) == []
    for n in (30, 31, 45, 60):
        review(w, minutes(t0, n), SMTP_OK)
    [alert] = alerts(engine)
    assert "no mail has been fetched" in text_of(alert)
    [incident] = incidents(engine)
    assert (incident.kind, incident.cleared_at) == (Kind.NO_FETCH, None)
    w.fetched(minutes(t0, 61))
    settle(w, minutes(t0, 62))
    assert kinds(engine) == ["alert", "alert_cleared"]


def test_a_restart_alone_clears_nothing(
    tmp_path: Path, engine: Engine, fixed_clock: datetime
) -> None:
    """A service restarted while the mailbox still cannot be read must not send an
    all-clear because it has only just started counting."""
    services = services_for(tmp_path, engine)
    t0 = fixed_clock
    first = watch(services, t0)
    review(first, minutes(t0, 31), SMTP_OK)  # never fetched: no_fetch
    assert [i.kind for i in incidents(engine)] == [Kind.NO_FETCH]
    again = watch(services, minutes(t0, 32))  # restarted; still nothing fetched
    for n in (33, 40, 50):
        review(again, minutes(t0, n), SMTP_OK)
    assert [i.cleared_at for i in incidents(engine)] == [None]
    again.fetched(minutes(t0, 51))
    settle(again, minutes(t0, 52))
    assert kinds(engine) == ["alert", "alert_cleared"]


def test_two_daemons_open_one_incident_and_send_one_alert(
    tmp_path: Path, engine: Engine, fixed_clock: datetime
) -> None:
    services = services_for(tmp_path, engine)
    t0 = fixed_clock
    one, two = watch(services, t0), watch(services, t0)
    one.mailbox_refused("refused", t0)
    two.mailbox_refused("refused", t0)
    review(one, t0, SMTP_OK)
    # The second saw nothing open when it looked (a race): the unique index decides.
    condition = Condition(Kind.MAILBOX_LOGIN_REFUSED, MAILBOX, t0, "refused")
    with transaction(engine) as session:
        two._open(session, condition, t0)
    review(two, minutes(t0, 1), SMTP_OK)
    assert len(incidents(engine)) == 1 and len(alerts(engine)) == 1


def test_a_refused_smtp_login_holds_until_mail_is_sent_again(
    tmp_path: Path, engine: Engine, fixed_clock: datetime
) -> None:
    services = services_for(tmp_path, engine)
    t0 = fixed_clock
    w = watch(services, t0)
    w.fetched(t0)
    refused = SmtpHealth(None, "login_refused", t0, "535 5.7.8 authentication failed")
    review(w, t0, refused)
    settle(w, minutes(t0, 1))  # no news of the SMTP server: not over
    [incident] = incidents(engine)
    assert (incident.kind, incident.cleared_at) == (Kind.SMTP_LOGIN_REFUSED, None)
    sent = SmtpHealth(minutes(t0, 10), None, None, "")
    settle(w, minutes(t0, 10), sent)
    assert kinds(engine) == ["alert", "alert_cleared"]
    assert "[smtp]" in text_of(alerts(engine)[0])


def queue_one(engine: Engine, at: datetime) -> None:
    with transaction(engine) as session:
        outbox.enqueue(
            session,
            kind="acknowledgement",
            sender="enquiries@example.gov.uk",
            recipients=["cllr.jane.smith@example.gov.uk"],
            subject="Enquiry received",
            raw=b"Subject: Enquiry received\r\n\r\nbody\r\n",
            message_id=f"ack-{at.timestamp()}@example.gov.uk",
            now=at,
        )


def test_mail_waiting_in_the_outbox_past_the_minutes_alerts_once_for_every_mailbox(
    tmp_path: Path, engine: Engine, fixed_clock: datetime
) -> None:
    services = make_services(tmp_path, engine, alerts={"outbox_stuck_minutes": 30})
    t0 = fixed_clock
    queue_one(engine, t0)
    here, there = watch(services, t0), watch(services, t0, "maildir:/srv/second-mailbox")
    for w in (here, there):
        w.fetched(minutes(t0, 29))
        review(w, minutes(t0, 29), SMTP_OK)
    assert incidents(engine) == []
    for w in (here, there):
        w.fetched(minutes(t0, 31))
        review(w, minutes(t0, 31), SMTP_OK)
    [incident] = incidents(engine)
    assert (incident.kind, incident.scope) == (Kind.OUTBOX_STUCK, "outbox")
    assert incident.detail == "1 emails waiting"  # its own alert is not in the count yet
    with transaction(engine) as session:  # the SMTP server is back: all of it goes
        session.connection().execute(update(OutboxMessage).values(status=OutboxStatus.SENT))
    for w in (here, there):
        w.fetched(minutes(t0, 40))
        settle(w, minutes(t0, 40))
    assert kinds(engine) == ["alert", "alert_cleared"]


def test_a_takeover_is_one_alert_and_no_all_clear(
    tmp_path: Path, engine: Engine, fixed_clock: datetime
) -> None:
    services = services_for(tmp_path, engine)
    t0 = fixed_clock
    w = watch(services, t0)
    w.took_over("node-a:4242", t0)
    w.fetched(t0)
    review(w, t0, SMTP_OK)
    review(w, minutes(t0, 20), SMTP_OK)
    [alert] = alerts(engine)
    assert "a standby mailbridge has taken the mailbox over" in text_of(alert)
    assert "took over from node-a:4242" in text_of(alert)
    [incident] = incidents(engine)
    assert incident.kind == Kind.TAKEOVER and incident.cleared_at is not None


def test_with_nobody_to_tell_the_incident_is_kept_and_health_json_says_it(
    tmp_path: Path, engine: Engine, fixed_clock: datetime
) -> None:
    services = make_services(
        tmp_path, engine, coordinators=[], alerts={**NOT_THE_OUTBOX, "recipients": []}
    )
    assert alert_recipients(services.config) == []
    t0 = fixed_clock
    w = watch(services, t0)
    w.mailbox_refused("refused", t0)
    review(w, t0, SMTP_OK)
    assert alerts(engine) == [] and len(incidents(engine)) == 1
    data_dir = services.config.storage.data_dir
    health = read_health(data_dir)
    assert health is not None and health["state"] == "failing"
    entry = health["mailboxes"][MAILBOX]
    assert entry["problems"] == [
        {"kind": "mailbox_login_refused", "since": t0.isoformat(timespec="seconds"),
         "scope": MAILBOX}
    ]  # fmt: skip
    found = check_health(configured(services, MAILBOX_URL), now=t0)
    assert found.status is Status.FAILED


def test_recipients_are_the_operators_and_the_coordinators_unless_left_out(
    tmp_path: Path, engine: Engine
) -> None:
    both = make_services(tmp_path, engine, alerts={"recipients": ["IT.Ops@example.gov.uk"]})
    assert alert_recipients(both.config) == [
        "it.ops@example.gov.uk",
        "member.support@example.gov.uk",
    ]
    operators = make_services(
        tmp_path,
        engine,
        alerts={"recipients": ["it.ops@example.gov.uk"], "include_coordinators": False},
    )
    assert alert_recipients(operators.config) == ["it.ops@example.gov.uk"]


def test_health_json_is_private_one_file_for_every_mailbox_and_read_by_check(
    tmp_path: Path, engine: Engine, fixed_clock: datetime
) -> None:
    services = services_for(tmp_path, engine)
    t0 = fixed_clock
    here, there = watch(services, t0), watch(services, t0, "maildir:/srv/second-mailbox")
    here.fetched(t0)
    review(here, t0, SmtpHealth(t0, None, None, ""))
    there.mailbox_refused("refused", t0)
    review(there, t0, SMTP_OK)
    data_dir = services.config.storage.data_dir
    path = data_dir / "health.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    health = json.loads(path.read_text())
    assert health["state"] == "failing"  # one of the two mailboxes is
    entry = health["mailboxes"][MAILBOX]
    assert entry["state"] == "ok" and entry["problems"] == []
    assert entry["last_fetch"] == entry["last_send"] == t0.isoformat(timespec="seconds")
    assert entry["holder"] == here.holder
    assert health["mailboxes"]["maildir:/srv/second-mailbox"]["state"] == "failing"

    # `check` finds its mailbox's entry by the name the source would give it.
    found = check_health(configured(services, "maildir:/srv/second-mailbox"), now=minutes(t0, 1))
    assert found.status is Status.FAILED
    assert found.advice[0].startswith(
        "the mail server refuses mailbridge's login to the shared mailbox since 01 Dec 10:00 UTC: "
        "the password"
    )
    mine = configured(services, MAILBOX_URL)
    ok = check_health(mine, now=minutes(t0, 1))
    assert ok.status is Status.OK, ok
    assert ok.found == (
        "ok since 01 Dec 10:00 UTC; last fetch 01 Dec 10:00 UTC; last send 01 Dec 10:00 UTC; "
        f"written 01 Dec 10:00 UTC by {here.holder}"
    )
    late = check_health(mine, now=minutes(t0, 11))  # nobody wrote it for 11 minutes
    assert late.status is Status.WARNING and "is mailbridge run running?" in late.advice[0]
    never = check_health(configured(services, f"maildir:{tmp_path}"), now=t0)
    assert never.status is Status.OK and "nothing written yet" in never.found


def configured(services: Services, url: str) -> Config:
    config = services.config
    return config.model_copy(update={"mailbox": config.mailbox.model_copy(update={"url": url})})
