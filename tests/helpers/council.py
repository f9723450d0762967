"""A council on the embedded default (Maildir in, a database, Maildir out) for the
conversation tests: its people, its mailbox, a pass of its daemon, and the mail people write
back to it the way their mail clients do."""

from __future__ import annotations

import base64
import mailbox
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses, make_msgid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from typer.testing import CliRunner, Result

from mailbridge.cases import assignment
from mailbridge.cases.assignment import Assigned
from mailbridge.cli.app import app
from mailbridge.delivery.transports.factory import open_sender
from mailbridge.mail.parsing import parse
from mailbridge.mailbox.maildir import MaildirSource, maildir_drop
from mailbridge.pipeline import quarantine
from mailbridge.pipeline.processor import Processor
from mailbridge.service.daemon import Daemon, PassReport
from mailbridge.services import Services
from mailbridge.store.models import (
    Case,
    Event,
    Message,
    OutboxMessage,
    Person,
    QuarantineItem,
    utcnow,
)
from tests.factories import add_person, fixture_bytes, make_services, seed_directory


def daemon_for(services: Services, chosen: list | None = None) -> Daemon:
    """The daemon of `services`, reading the Maildir its config names (with only the
    `chosen` steps, when given)."""
    root = Path(services.config.mailbox.url.split(":", 1)[1])
    source = MaildirSource(root)
    d = Daemon(services, source, lambda: open_sender(services.config))
    if chosen is not None:
        d.processor = Processor(services, chosen)
    return d


MAILBOX = "enquiries@example.gov.uk"
JANE = "cllr.jane.smith@example.gov.uk"
JANE_HOME = "jane.smith@home.example.org"  # Jane's other address in the directory
RAJ = "raj.patel@example.gov.uk"
TOM = "tom.baker@example.gov.uk"  # Jane's delegate
PRIYA = "priya.shah@example.gov.uk"
SAM = "sam.whitaker@example.gov.uk"
ANN = "ann.other@example.gov.uk"  # an officer on no case
GARETH = "cllr.jones@members.example-county.gov.uk"
SUPPORT = "member.support@example.gov.uk"  # the coordinators
REF = "MQ-2026-00001"
POTHOLE_TEXT = "Two cars have had damaged tyres this week"


# --- a council with its mailbox -------------------------------------------------------


@dataclass
class Council:
    """One mailbridge: drop mail into its inbox, run a pass, read what it sent since."""

    services: Services
    seen: set[str] = field(default_factory=set)

    @property
    def engine(self) -> Engine:
        return self.services.engine

    @property
    def inbox(self) -> Path:
        return Path(self.services.config.mailbox.url.split(":", 1)[1])

    @property
    def outbox(self) -> Path:
        return Path(self.services.config.smtp.url.split(":", 1)[1])

    def deliver(self, *raws: bytes, at: datetime | None = None) -> PassReport:
        """The MTA delivers the mail (at `at`, else its Received time or now); one pass runs.
        The file time is always set, so "now" is the test's clock, not the file system's."""
        for raw in raws:
            maildir_drop(self.inbox, raw, at or parse(raw).received_at or utcnow())
        return self.run()

    def run(self) -> PassReport:
        report = daemon_for(self.services).run_pass(full_scan=True)
        assert report.failed == 0 and report.delivery_failed == 0, report
        with Session(self.engine) as session:
            waiting = session.exec(select(func.count()).where(OutboxMessage.status != "sent")).one()
        assert waiting == 0, "every queued email goes out in the same pass"
        return report

    def new_mail(self) -> list[EmailMessage]:
        """What was sent since the last call, in the order it was queued."""
        by_id: dict[str, EmailMessage] = {}
        if self.outbox.exists():
            box = mailbox.Maildir(self.outbox, create=False)
            for key in box.iterkeys():
                msg = message_from_bytes(box.get_bytes(key), policy=policy.default)
                by_id[str(msg["Message-ID"]).strip("<>")] = msg  # type: ignore[assignment]
        with Session(self.engine) as session:
            order = session.exec(select(OutboxMessage.message_id).order_by(OutboxMessage.id))
            fresh = [by_id[i] for i in order if i in by_id and i not in self.seen]
        self.seen.update(str(m["Message-ID"]).strip("<>") for m in fresh)
        return fresh

    def open_pothole_case(self) -> EmailMessage:
        """Jane's pothole enquiry (received Tue 24 Nov 2026 09:15) becomes REF; its ack."""
        report = self.deliver(fixture_bytes("member_new_enquiry_pothole.eml"))
        assert report.references == [REF]
        [ack] = self.new_mail()
        return ack

    def assign(
        self, lead: str, *also: str, reference: str = REF, reassign: bool = False
    ) -> Assigned:
        done = assignment.assign(
            self.services, reference, lead, also, actor="coordinator (test)", reassign=reassign
        )
        self.run()
        return done

    def assigned_pothole(self, *also: str) -> dict[str, EmailMessage]:
        """REF opened and assigned to Priya (and `also`): the mail that went out, by address."""
        self.open_pothole_case()
        self.assign(PRIYA, *also)
        return {recipients(m)[0]: m for m in self.new_mail()}

    # -- the database --------------------------------------------------------------------

    @contextmanager
    def db(self) -> Iterator[Session]:
        with Session(self.engine) as session:
            yield session

    def case(self, reference: str = REF) -> Case:
        with self.db() as session:
            return session.exec(select(Case).where(Case.reference == reference)).one()

    def events(self, reference: str | None = REF, kind: str | None = None) -> list[Event]:
        with self.db() as session:
            query = select(Event).order_by(col(Event.id))
            if reference is not None:
                query = query.where(Event.case_id == self.case(reference).id)
            if kind is not None:
                query = query.where(Event.kind == kind)
            return list(session.exec(query).all())

    def kinds(self, reference: str = REF) -> list[str]:
        return [e.kind for e in self.events(reference)]

    def inbound(self, message_id: str) -> Message:
        with self.db() as session:
            return session.exec(
                select(Message).where(Message.message_id == message_id.strip("<>"))
            ).one()

    def count(self, model: type) -> int:
        with self.db() as session:
            return session.exec(select(func.count()).select_from(model)).one()

    def quarantined(self) -> list[QuarantineItem]:
        return quarantine.list_items(self.services)

    def person_id(self, email: str) -> int:
        with self.db() as session:
            return session.exec(select(Person.id).where(Person.email == email)).one()  # type: ignore[return-value]


def council_cli(config: Path, *args: str) -> Result:
    """`mailbridge ARGS --config CONFIG` in-process, at a known terminal width."""
    return CliRunner().invoke(app, [*args, "--config", str(config)], env={"COLUMNS": "300"})


def write_council_config(tmp_path: Path, db_url: str, extra: str = "") -> Path:
    """The config.toml of the council the tests build, for driving the CLI against it."""
    config = tmp_path / "config.toml"
    config.write_text(
        f"""\
[mailbox]
url = "maildir:{tmp_path / "mailbox"}"
[smtp]
url = "maildir:{tmp_path / "outbox"}"
from_address = "{MAILBOX}"
[database]
url = "{db_url}"
[storage]
data_dir = "{tmp_path / "data"}"
[[coordinators]]
name = "Member Support"
email = "{SUPPORT}"
{extra}""",
        encoding="utf-8",
    )
    return config


def build_council(tmp_path: Path, engine: Engine, **sections: dict[str, Any]) -> Council:
    seed_directory(engine)
    add_person(engine, "officer", "Sam Whitaker", SAM, service_area="Highways")
    add_person(engine, "officer", "Ann Other", ANN, service_area="Highways")
    return Council(make_services(tmp_path, engine, **sections))


# --- reading and writing mail ---------------------------------------------------------


def recipients(msg: EmailMessage) -> list[str]:
    return [a.lower() for _, a in getaddresses(msg.get_all("To", []) + msg.get_all("Cc", []))]


def text_of(msg: EmailMessage) -> str:
    """The plain-text part as a person reads it (our mail is sent with CRLF line ends)."""
    return msg.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    return part.get_content() if part is not None else ""


def attachment_names(msg: EmailMessage) -> list[str]:
    return [p.get_filename() or "" for p in msg.iter_attachments()]


def only(mails: Iterable[EmailMessage], address: str) -> EmailMessage:
    [found] = [m for m in mails if address in recipients(m)]
    return found


def msgid(msg: EmailMessage) -> str:
    return str(msg["Message-ID"]).strip()


def id_of(raw: bytes) -> str:
    """The Message-ID of an email we wrote for a test."""
    return str(message_from_bytes(raw)["Message-ID"]).strip()


def assert_threaded(msg: EmailMessage, reference: str, in_reply_to: str) -> None:
    """Our case mail: the tag, the threading headers, Outlook's thread, our loop guards."""
    assert str(msg["Subject"]).startswith(f"[{reference}] ")
    assert msg["In-Reply-To"] == in_reply_to
    assert in_reply_to in str(msg["References"]).split()
    assert msg["Thread-Topic"] and len(thread_root(msg)) == 22
    assert msg["X-Mailbridge-Loop"] == "example.gov.uk"
    assert msg["X-Auto-Response-Suppress"] == "All"


def thread_root(msg: EmailMessage) -> bytes:
    """The 22-byte head of Outlook's Thread-Index: the same on every email of one case."""
    index = base64.b64decode(str(msg["Thread-Index"]))
    assert len(index) == 27, "the head and one 5-byte response level"
    return index[:22]


POTHOLE_ID = "<CAF1234567.pothole@mail.example.gov.uk>"


def reply(
    original: EmailMessage,
    sender: str,
    text: str,
    *,
    name: str = "",
    subject: str | None = None,
    threaded: bool = True,
    style: str = "outlook",
    headers: dict[str, str] | None = None,
) -> bytes:
    """A person's reply to mail we sent: new text on top, the original quoted below."""
    msg = EmailMessage()
    msg["From"] = formataddr((name, sender))
    msg["To"] = formataddr(("Member Enquiries", MAILBOX))
    msg["Subject"] = subject if subject is not None else f"RE: {original['Subject']}"
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    if threaded:
        msg["In-Reply-To"] = msgid(original)
        msg["References"] = " ".join(
            r for r in (str(original.get("References") or ""), msgid(original)) if r
        )
    for key, value in (headers or {}).items():
        msg[key] = value
    body = text_of(original)
    if style == "outlook":
        quoted = (
            f"From: Member Enquiries <{MAILBOX}>\n"
            f"Sent: {original['Date']}\n"
            f"To: {original['To']}\n"
            f"Subject: {original['Subject']}\n\n{body}"
        )
    else:  # Gmail and Apple Mail
        quoted = f"On {original['Date']}, Member Enquiries <{MAILBOX}> wrote:\n\n" + "\n".join(
            f"> {line}" for line in body.splitlines()
        )
    msg.set_content(f"{text}\n\n{quoted}\n")
    return msg.as_bytes()


def new_email(sender: str, subject: str, text: str, *, name: str = "", to: str = MAILBOX) -> bytes:
    """A fresh email, no threading headers."""
    msg = EmailMessage()
    msg["From"] = formataddr((name, sender))
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    msg.set_content(text)
    return msg.as_bytes()


def out_of_office(original: EmailMessage, sender: str, name: str) -> bytes:
    """Exchange's out-of-office agent answering mail we sent."""
    return reply(
        original,
        sender,
        "Thank you for your email. I am on annual leave until Monday 7 December.",
        name=name,
        subject=f"Automatic reply: {original['Subject']}",
        headers={
            "Auto-Submitted": "auto-generated",
            "X-Auto-Response-Suppress": "All",
            "X-MS-Exchange-Inbox-Rules-Loop": sender,
        },
    )


def bounce(
    raw_original: bytes, recipient: str, *, status: str = "5.1.1", action: str = "failed"
) -> bytes:
    """A Postfix DSN returning one of our messages (its bytes as the relay saw them)."""
    returned = raw_original.decode("utf-8").replace("\r\n", "\n")
    return f"""\
Return-Path: <>
Received: by relay.example.gov.uk (Postfix) id 4Cz8Lm0QkTz9sWx; {format_datetime(utcnow())}
Date: {format_datetime(utcnow())}
From: MAILER-DAEMON@relay.example.gov.uk (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {MAILBOX}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="BOUNDARY.relay"
Message-Id: {make_msgid(domain="relay.example.gov.uk")}

--BOUNDARY.relay
Content-Description: Notification
Content-Type: text/plain; charset=utf-8

This is the mail system at host relay.example.gov.uk.

<{recipient}>: host mx.example.gov.uk[192.0.2.44] said: 550 {status}
    <{recipient}>: Recipient address rejected: User unknown (in reply to RCPT TO)

--BOUNDARY.relay
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.gov.uk

Final-Recipient: rfc822; {recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected: User unknown

--BOUNDARY.relay
Content-Description: Undelivered Message
Content-Type: message/rfc822

{returned}
--BOUNDARY.relay--
""".encode()


def outbox_raw(council: Council, msg: EmailMessage) -> bytes:
    with council.db() as session:
        row = session.exec(
            select(OutboxMessage).where(OutboxMessage.message_id == msgid(msg).strip("<>"))
        ).one()
        return row.raw


def council_first(council: Council, address: str) -> EmailMessage:
    """The first email we sent to `address` (read back from the outbox table)."""
    with council.db() as session:
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    for row in rows:
        msg = message_from_bytes(row.raw, policy=policy.default)
        if address in recipients(msg):  # type: ignore[arg-type]
            return msg  # type: ignore[return-value]
    raise AssertionError(f"nothing was sent to {address}")
