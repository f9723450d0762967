"""A whole conversation end to end: Dovecot in, the `mailbridge` command in its own process,
aiosmtpd out.

Only the command line drives mailbridge (`members import`, `officers import`, `case assign`,
`run --once`, `case show`, `cases list`, `quarantine list`, `addresses list`), with a config
that has a coordinator and a signing key. People write the way their mail clients do: the
councillor from Exchange and an iPhone, the officer from Outlook desktop (top-posted, quoted
original below an Outlook header block, a child Thread-Index). In the middle, an Exchange
out-of-office, a Postfix "delayed mail" report and a Gmail vacation reply arrive; they may
only add to the case's log.

The story: enquiry -> acknowledgement -> assignment (officer gets the enquiry, the member
is told who) -> holding reply with #holding and #extend -> out-of-office and delayed DSN ->
the member chases -> final reply completes the case -> a vacation reply to it changes nothing
-> the member writes back within 5 working days and the case reopens.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailbridge.mail.tokens import verify_message_id
from tests.helpers.clock import python_command
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer

SIGNING_KEY = "e2e-conversation-signing-key-7f3a9c"
MAILBOX = "enquiries@example.gov.uk"
MEMBER = "cllr.jane.smith@example.gov.uk"
MEMBER_HOME = "jane.smith@home.example.org"  # her extra address in the directory
OFFICER = "priya.shah@example.gov.uk"
OTHER_OFFICER = "tom.hughes@example.gov.uk"
COORDINATOR = "member.support@example.gov.uk"
SUBJECT = "Pothole on Mill Lane, Little Bowden"

MEMBERS_CSV = f"""\
name,email,extra_emails,division,district,party
Cllr Jane Smith,{MEMBER},{MEMBER_HOME},Bowden,Harborough,Independent
Cllr Raj Patel,raj.patel@example.gov.uk,,Oadby,Oadby and Wigston,Labour
"""
OFFICERS_CSV = f"""\
name,email,extra_emails,service_area,directorate
Priya Shah,{OFFICER},,Highways,Environment and Transport
Tom Hughes,{OTHER_OFFICER},,School Transport,Children's Services
"""

ENQUIRY_TEXT = """\
Dear Member Support,

A resident has reported a large pothole on Mill Lane, Little Bowden, outside number 14.
Their car was damaged on Sunday evening. Could Highways inspect it and let me know when
it will be repaired?

Jane Smith
County Councillor, Bowden Division
"""
HOLDING_ANSWER = "Our inspector visited this morning and the repair is booked as a priority."
FINAL_ANSWER = "The contractor filled the pothole outside 14 Mill Lane this afternoon."
CHASER_TEXT = "Any news? The resident says the hole is getting bigger."
REOPEN_TEXT = "Thanks, but the hole is back after last night's rain."


# --- what arrives at the SMTP server ------------------------------------------------------


@dataclass
class Sent:
    """One email as aiosmtpd received it."""

    rcpt_tos: list[str]
    raw: bytes
    msg: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.msg["Subject"])

    @property
    def message_id(self) -> str:
        return str(self.msg["Message-ID"]).strip().strip("<>")

    @property
    def in_reply_to(self) -> str | None:
        value = self.msg["In-Reply-To"]
        return str(value).strip().strip("<>") if value is not None else None

    @property
    def references(self) -> list[str]:
        return re.findall(r"<([^<>\s]+)>", str(self.msg.get("References", "")))

    @property
    def to(self) -> list[str]:
        return sorted(a.lower() for _, a in getaddresses([str(self.msg.get("To", ""))]))

    @property
    def text(self) -> str:
        body = self.msg.get_body(("plain",))
        assert body is not None, f"no text/plain part in {self.subject!r}"
        return str(body.get_content())  # type: ignore[attr-defined]

    @property
    def thread_index(self) -> bytes:
        value = self.msg["Thread-Index"]
        assert value is not None, f"no Thread-Index on {self.subject!r}"
        return base64.b64decode(str(value))

    @property
    def header_block(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n")


class Mailbridge:
    """The `mailbridge` command in its own process, and what the SMTP server saw since."""

    def __init__(self, tmp_path: Path, imap: DovecotServer, smtp: SmtpServer) -> None:
        self.dir = tmp_path
        self.imap = imap
        self.smtp = smtp
        self.seen = 0
        self.config = tmp_path / "config.toml"
        self.config.write_text(
            f"""
[council]
name = "Example County Council"
timezone = "Europe/London"

[mailbox]
url = "imap://{imap.user}@{imap.host}:{imap.port}/"
password_env = "MB_TEST_IMAP_PASSWORD"
parse_workers = 0
poll_seconds = 1
idle = false
timeout_seconds = 10

[smtp]
url = "smtp://{smtp.host}:{smtp.port}"
from_address = "{MAILBOX}"
from_name = "Member Enquiries"
timeout_seconds = 10
retry_base_seconds = 1

[database]
url = "sqlite:///./mailbridge.db"

[storage]
data_dir = "./data"

[security]
signing_key_env = "MB_TEST_SIGNING_KEY"

[schedule]
# The conversation runs on a ticking clock: no digest may join the mail it counts.
coordinator_digest_at = ""
member_digest_at = ""
management_summary_at = ""

[[service_areas]]
name = "Highways"
directorate = "Environment and Transport"
keywords = ["pothole", "road"]

[[coordinators]]
name = "Member Support Team"
email = "{COORDINATOR}"
""",
            encoding="utf-8",
        )
        self.env = {
            **os.environ,
            "MB_TEST_IMAP_PASSWORD": imap.password,
            "MB_TEST_SIGNING_KEY": SIGNING_KEY,
            "COLUMNS": "250",  # rich tables: no wrapping of the timeline
            "NO_COLOR": "1",
        }

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            python_command("mailbridge", *args, "--config", str(self.config)),
            env=self.env, cwd=self.dir, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, f"mailbridge {' '.join(args)}: {done.stderr}{done.stdout}"
        assert "Traceback" not in done.stderr, done.stderr
        return done.stdout

    def run_once(self) -> str:
        return self.cli("run", "--once")

    def new_mail(self) -> list[Sent]:
        """What aiosmtpd received since the last call, in arrival order."""
        fresh = self.smtp.messages[self.seen :]
        self.seen += len(fresh)
        return [
            Sent(
                sorted(r.lower() for r in m.rcpt_tos),
                m.content,
                message_from_bytes(m.content, policy=policy.default),  # type: ignore[arg-type]
            )
            for m in fresh
        ]

    def case_show(self, reference: str) -> str:
        return self.cli("case", "show", reference)


def fields_of(case_show: str) -> str:
    """The field block of `case show` (status, officer, deadlines): everything before the
    enquiry text and the timeline."""
    return case_show.split("\nEnquiry", 1)[0]


def field(case_show: str, label: str) -> str:
    found = re.search(rf"^\s+{re.escape(label)}\s{{2,}}(.+)$", case_show, re.MULTILINE)
    assert found, f"no {label!r} in case show:\n{case_show}"
    return found.group(1).strip()


def timeline_rows(case_show: str, kind: str) -> list[str]:
    """Timeline lines of one kind (the table's "What" column)."""
    timeline = case_show.split("Timeline", 1)[1]
    return [line for line in timeline.splitlines() if re.search(rf"\W{re.escape(kind)}\W", line)]


def due_date(text: str, before: str) -> date:
    """The first long date ("Wednesday 9 December 2026") after the `before` pattern."""
    found = re.search(before + r"(\w+\s+\d{1,2}\s+\w+\s+\d{4})", text)
    assert found, f"no date after {before!r} in:\n{text}"
    return datetime.strptime(" ".join(found.group(1).split()), "%A %d %B %Y").date()


def one_to(batch: list[Sent], *recipients: str) -> Sent:
    wanted = sorted(recipients)
    found = [s for s in batch if s.rcpt_tos == wanted]
    assert len(found) == 1, f"{len(found)} emails to {wanted}: {[s.subject for s in batch]}"
    return found[0]


# --- what people send ---------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def outlook_sent_line(moment: datetime) -> str:
    local = moment.astimezone(ZoneInfo("Europe/London"))
    return f"{local:%A, %B} {local.day}, {local:%Y} {local:%I:%M %p}".replace(" 0", " ")


def outlook_child_index(parent: bytes) -> str:
    """What Outlook puts in a reply: the parent's Thread-Index plus one 5-byte level."""
    return base64.b64encode(parent + b"\x00\x01\x02\x03\x04").decode()


def member_enquiry() -> tuple[str, bytes]:
    msg = EmailMessage()
    msg["From"] = f"Cllr Jane Smith <{MEMBER}>"
    msg["To"] = f"Member Enquiries <{MAILBOX}>"
    msg["Subject"] = SUBJECT
    msg["Date"] = format_datetime(_now())
    msg["Message-ID"] = mid = make_msgid("enquiry", "BOWDEN01.example.gov.uk")
    msg["Thread-Topic"] = SUBJECT
    msg["Content-Language"] = "en-GB"
    msg.set_content(ENQUIRY_TEXT)
    return mid.strip("<>"), msg.as_bytes()


def outlook_reply(original: Sent, *, sender: str, name: str, answer: str) -> tuple[str, bytes]:
    """An Outlook desktop reply: `RE: ` subject, top-posted text, the original quoted below
    an Outlook header block, In-Reply-To/References/Thread-Index as Outlook sets them."""
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = f"Member Enquiries <{MAILBOX}>"
    msg["Subject"] = "RE: " + original.subject
    msg["Thread-Topic"] = str(original.msg.get("Thread-Topic", original.subject))
    msg["Thread-Index"] = outlook_child_index(original.thread_index)
    msg["Date"] = format_datetime(_now())
    msg["Message-ID"] = mid = make_msgid("outlook", "LO2P265MB4012.GBRP265.PROD.OUTLOOK.EXAMPLE")
    msg["References"] = " ".join(f"<{r}>" for r in [*original.references, original.message_id])
    msg["In-Reply-To"] = f"<{original.message_id}>"
    msg["Accept-Language"] = "en-GB, en-US"
    msg["Content-Language"] = "en-GB"
    quoted = (
        f"From: Member Enquiries <{MAILBOX}>\n"
        f"Sent: {outlook_sent_line(original.msg['Date'].datetime)}\n"  # type: ignore[union-attr]
        f"To: {original.msg['To']}\n"
        f"Subject: {original.subject}\n\n"
        f"{original.text}"
    )
    msg.set_content(f"{answer}\n\n{quoted}")
    return mid.strip("<>"), msg.as_bytes()


def iphone_reply(original: Sent, *, answer: str) -> tuple[str, bytes]:
    """Apple Mail on an iPhone: `Re: `, the answer, "Sent from my iPhone", then the original
    quoted with `>` under an attribution line."""
    when = original.msg["Date"].datetime.astimezone(ZoneInfo("Europe/London"))  # type: ignore[union-attr]
    msg = EmailMessage()
    msg["From"] = f"Jane Smith <{MEMBER}>"
    msg["To"] = f"Member Enquiries <{MAILBOX}>"
    msg["Subject"] = "Re: " + original.subject
    msg["Date"] = format_datetime(_now())
    msg["Message-ID"] = mid = make_msgid("iphone", "example.gov.uk")
    msg["References"] = " ".join(f"<{r}>" for r in [*original.references, original.message_id])
    msg["In-Reply-To"] = f"<{original.message_id}>"
    msg["X-Mailer"] = "iPhone Mail (22B91)"
    quoted = "\n".join(f"> {line}".rstrip() for line in original.text.splitlines())
    msg.set_content(
        f"{answer}\n\nSent from my iPhone\n\n"
        f"On {when.day} {when:%b %Y}, at {when:%H:%M}, Member Enquiries <{MAILBOX}> wrote:\n\n"
        f"{quoted}\n"
    )
    return mid.strip("<>"), msg.as_bytes()


def exchange_out_of_office(original: Sent) -> tuple[str, bytes]:
    """The member's Exchange out-of-office answering one of our emails."""
    msg = EmailMessage()
    msg["From"] = f"Cllr Jane Smith <{MEMBER}>"
    msg["To"] = f"Member Enquiries <{MAILBOX}>"
    msg["Subject"] = "Automatic reply: " + original.subject
    msg["Thread-Topic"] = original.subject
    msg["Thread-Index"] = outlook_child_index(original.thread_index)
    msg["Date"] = format_datetime(_now())
    msg["Message-ID"] = mid = make_msgid("oof", "BOWDEN01.example.gov.uk")
    msg["References"] = f"<{original.message_id}>"
    msg["In-Reply-To"] = f"<{original.message_id}>"
    msg["auto-submitted"] = "auto-generated"
    msg["x-ms-exchange-generated-message-source"] = "Mailbox Rules Agent"
    msg["X-MS-Exchange-Inbox-Rules-Loop"] = MEMBER
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(
        "Thank you for your email. I am away from the office until Monday and will reply\n"
        "when I return. For urgent division matters please call 0116 496 0456.\n\n"
        "Jane Smith\n"
    )
    return mid.strip("<>"), msg.as_bytes()


def gmail_vacation(original: Sent) -> tuple[str, bytes]:
    """A Gmail vacation responder on the member's home address (an extra address of hers)."""
    msg = EmailMessage()
    msg["Return-Path"] = f"<{MEMBER_HOME}>"
    msg["From"] = f"Jane Smith <{MEMBER_HOME}>"
    msg["To"] = f"Member Enquiries <{MAILBOX}>"
    msg["Subject"] = "Away until Monday"
    msg["Date"] = format_datetime(_now())
    msg["Message-ID"] = mid = make_msgid("vacation", "mail.gmail.example")
    msg["In-Reply-To"] = f"<{original.message_id}>"
    msg["References"] = f"<{original.message_id}>"
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("I am away until Monday with limited access to email.\n\nJane\n")
    return mid.strip("<>"), msg.as_bytes()


def postfix_delayed(original: Sent, recipient: str) -> tuple[str, bytes]:
    """Postfix's "Delayed Mail (still being retried)" report: a TEMPORARY failure (4.4.1,
    Action: delayed) returning the headers of one of our emails."""
    now = _now()
    queue_id = "4Cz8Lm0QkTz9sWx"
    boundary = f"{queue_id}.1795518309/relay.example.gov.uk"
    mid = f"{now:%Y%m%d%H%M%S}.{queue_id}@relay.example.gov.uk"
    returned = original.header_block.decode("ascii", "replace")
    text = f"""\
Return-Path: <>
Delivered-To: {MAILBOX}
Received: by relay.example.gov.uk (Postfix)
	id {queue_id}; {format_datetime(now)}
Date: {format_datetime(now)}
From: MAILER-DAEMON@relay.example.gov.uk (Mail Delivery System)
Subject: Delayed Mail (still being retried)
To: {MAILBOX}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="{boundary}"
Content-Transfer-Encoding: 8bit
Message-Id: <{mid}>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.example.gov.uk.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for 0.5 hours.
It will be retried until it is 5.0 days old.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<{recipient}>: connect to mx.example.gov.uk[192.0.2.25]:25:
    Connection timed out

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.gov.uk
X-Postfix-Queue-ID: {queue_id}
X-Postfix-Sender: rfc822; {MAILBOX}
Arrival-Date: {format_datetime(now - timedelta(minutes=30))}

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.example.gov.uk[192.0.2.25]:25:
    Connection timed out
Will-Retry-Until: {format_datetime(now + timedelta(days=5))}

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

Received: from mailbridge.example.gov.uk (mailbridge.example.gov.uk [192.0.2.20])
	by relay.example.gov.uk (Postfix) with ESMTP id {queue_id}
	for <{recipient}>; {format_datetime(now - timedelta(minutes=30))}
{returned}

--{boundary}--
"""
    return mid, text.encode("utf-8")


# --- the conversation ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_whole_conversation_over_imap_and_smtp(
    tmp_path: Path, imap_mailbox: DovecotServer, smtp_server: SmtpServer, fixed_clock: datetime
) -> None:
    """The whole story on one clock, from FIXED_NOW (Tue 1 Dec 2026 10:00): the mail people
    write, its INTERNALDATE and every `mailbridge` command."""
    mb = Mailbridge(tmp_path, imap_mailbox, smtp_server)
    (tmp_path / "members.csv").write_text(MEMBERS_CSV, encoding="utf-8")
    (tmp_path / "officers.csv").write_text(OFFICERS_CSV, encoding="utf-8")
    assert "2 members imported: 2 created" in mb.cli("members", "import", "members.csv")
    assert "2 officers imported: 2 created" in mb.cli("officers", "import", "officers.csv")
    key = SIGNING_KEY.encode()
    case_mail: list[Sent] = []  # everything we sent about the case, for the Thread-Index check

    # 1. The councillor emails an enquiry: a case and an acknowledgement threaded to it. ----
    enquiry_id, raw = member_enquiry()
    imap_mailbox.append(raw)
    out = mb.run_once()
    assert "1 new cases, 0 updates, 0 quarantined" in out, out
    [ack] = mb.new_mail()
    case_mail.append(ack)
    ref = "MQ-2026-00001"  # the year the mail was received in
    assert ack.subject == f"[{ref}] Enquiry received: {SUBJECT}"
    assert ack.rcpt_tos == [MEMBER]
    assert ack.msg["Auto-Submitted"] == "auto-replied"
    assert ack.in_reply_to == enquiry_id
    assert ack.references == [enquiry_id]
    assert verify_message_id(ack.message_id, [key]) == ref  # signed with the configured key
    assert "Reply due by" in ack.text and f"Ref: {ref}" in ack.text
    show = mb.case_show(ref)
    assert field(show, "Status") == "New"
    assert field(show, "Lead officer") == "not assigned"
    assert field(show, "Member") == f"Cllr Jane Smith <{MEMBER}>"
    assert field(show, "Service area") == "Highways"

    # 2. The coordinator assigns it: the officer gets the enquiry, the member the name. ----
    assigned_out = mb.cli("case", "assign", ref, "--lead", OFFICER)
    assert f"{ref}: lead officer {OFFICER}" in assigned_out
    assert f"the enquiry is queued for {OFFICER}" in assigned_out
    assert "the member is told who the lead officer is" in assigned_out
    assert mb.new_mail() == []  # nothing leaves before the next pass
    out = mb.run_once()
    assert "0 new cases, 0 updates, 0 quarantined" in out and "2 emails sent" in out, out
    batch = mb.new_mail()
    assert len(batch) == 2, [s.subject for s in batch]
    assignment = one_to(batch, OFFICER)
    told = one_to(batch, MEMBER)
    case_mail += batch
    assert assignment.subject == f"[{ref}] For your reply: {SUBJECT}"
    assert assignment.to == [OFFICER]
    assert "outside number 14" in assignment.text  # the member's own words
    assert "HOW TO REPLY" in assignment.text and "#holding" in assignment.text
    assert f"Ref: {ref}" in assignment.text
    assert assignment.in_reply_to == enquiry_id
    assert enquiry_id in assignment.references
    assert verify_message_id(assignment.message_id, [key]) == ref
    assert told.subject == f"[{ref}] Your enquiry has been assigned: {SUBJECT}"
    assert "assigned to Priya Shah" in told.text
    assert told.in_reply_to == enquiry_id and enquiry_id in told.references
    assert verify_message_id(told.message_id, [key]) == ref
    show = mb.case_show(ref)
    assert field(show, "Status") == "In progress"
    assert field(show, "Lead officer") == "Priya Shah"
    original_due = field(show, "Reply due")

    # 3. The officer's holding reply, with #holding and #extend, from Outlook. -------------
    holding_body = (
        "Dear Cllr Smith,\n\n"
        f"{HOLDING_ANSWER}\n"
        "We are waiting for the contractor to confirm a date and I will write again then.\n\n"
        "#holding\n"
        "#extend 3 waiting for the contractor\n\n"
        "Kind regards\n"
        "Priya\n\n"
        "Priya Shah\n"
        "Highways Area Manager (South)\n"
        "Tel: 0116 305 0000\n"
    )
    holding_id, raw = outlook_reply(
        assignment, sender=OFFICER, name="Priya Shah", answer=holding_body
    )
    imap_mailbox.append(raw)
    out = mb.run_once()
    assert "0 new cases, 1 updates, 0 quarantined" in out and "1 emails sent" in out, out
    [holding] = mb.new_mail()
    case_mail.append(holding)
    assert holding.rcpt_tos == [MEMBER]
    assert holding.subject == f"[{ref}] Update on your enquiry: {SUBJECT}"
    assert HOLDING_ANSWER in holding.text
    assert "#holding" not in holding.text and "#extend" not in holding.text
    assert "waiting for the contractor to confirm" in holding.text  # the officer's own line
    assert "HOW TO REPLY" not in holding.text  # the quoted assignment is not relayed
    assert f"From: Member Enquiries <{MAILBOX}>" not in holding.text
    assert "Tel: 0116 305 0000" not in holding.text  # nor the signature
    assert "stays open" in holding.text
    assert holding.in_reply_to in (enquiry_id, holding_id)
    assert enquiry_id in holding.references
    assert verify_message_id(holding.message_id, [key]) == ref
    show = mb.case_show(ref)
    assert field(show, "Status") == "In progress"
    [extended] = timeline_rows(show, "deadline_extended")
    assert "3 working days" in extended
    assert original_due.split(" (")[0] in show  # the original deadline is kept
    show_after_holding = show  # the extension itself is checked at the end (see there)
    assert timeline_rows(show, "holding_reply")
    assert not timeline_rows(show, "responded")

    # In the middle: the member's out-of-office, and a delayed-delivery report for the ----
    # holding reply. They may add to the case's log, and change nothing else.
    fields_before = fields_of(show)
    _, raw = exchange_out_of_office(holding)
    imap_mailbox.append(raw)
    _, raw = postfix_delayed(holding, MEMBER)
    imap_mailbox.append(raw)
    out = mb.run_once()
    assert "0 new cases, 2 updates, 0 quarantined" in out, out
    batch = mb.new_mail()
    # Nothing to the member, the officer, the out-of-office or the mailer daemon; the
    # coordinators are told the mail is delayed (the issue: "coordinators are told").
    assert [s.rcpt_tos for s in batch] == [[COORDINATOR]], [(s.rcpt_tos, s.subject) for s in batch]
    [notice] = batch
    case_mail.append(notice)
    assert notice.subject == f"[{ref}] Email not delivered: {SUBJECT}"
    assert MEMBER in notice.text and "4.4.1" in notice.text
    assert "keep trying" in notice.text  # a temporary failure, said as such
    show = mb.case_show(ref)
    assert fields_of(show) == fields_before  # status, officer, deadlines: untouched
    [auto] = timeline_rows(show, "auto_reply_received")
    assert MEMBER in auto
    [failed] = timeline_rows(show, "delivery_failed")
    assert "temporary" in failed and MEMBER in failed
    assert not timeline_rows(show, "update_requested")  # the out-of-office is no chaser
    assert not timeline_rows(show, "officer_away")  # the member, not the officer, is away
    assert "No flagged addresses" in mb.cli("addresses", "list")  # 4.x.x flags nobody

    # 4. The member chases from her iPhone, replying to the holding reply. ----------------
    chaser_id, raw = iphone_reply(holding, answer=CHASER_TEXT)
    imap_mailbox.append(raw)
    out = mb.run_once()
    assert "0 new cases, 1 updates, 0 quarantined" in out and "1 emails sent" in out, out
    [chase] = mb.new_mail()
    case_mail.append(chase)
    assert chase.rcpt_tos == sorted([OFFICER, COORDINATOR])
    assert chase.subject == f"[{ref}] Update requested (1): {SUBJECT}"
    assert CHASER_TEXT in chase.text
    assert "Sent from my iPhone" not in chase.text.split("History", 1)[0]
    assert verify_message_id(chase.message_id, [key]) == ref
    assert chase.in_reply_to in (enquiry_id, chaser_id)
    assert enquiry_id in chase.references
    show = mb.case_show(ref)
    assert field(show, "Status") == "In progress"
    assert len(timeline_rows(show, "update_requested")) == 1

    # 5. The officer's final answer, replying to the chase notice: the case completes. ----
    final_body = (
        "Dear Cllr Smith,\n\n"
        f"{FINAL_ANSWER}\n"
        "Please let me know if the resident sees any further problem.\n\n"
        "Kind regards\n"
        "Priya\n\n"
        "Priya Shah\n"
        "Highways Area Manager (South)\n"
    )
    _, raw = outlook_reply(chase, sender=OFFICER, name="Priya Shah", answer=final_body)
    imap_mailbox.append(raw)
    out = mb.run_once()
    assert "0 new cases, 1 updates, 0 quarantined" in out and "1 emails sent" in out, out
    [response] = mb.new_mail()
    case_mail.append(response)
    assert response.rcpt_tos == [MEMBER]
    assert response.subject == f"[{ref}] Response to your enquiry: {SUBJECT}"
    assert FINAL_ANSWER in response.text
    assert CHASER_TEXT not in response.text  # the quoted chase notice stays internal
    assert "This completes your enquiry" in response.text
    assert response.in_reply_to in (enquiry_id, chaser_id)
    assert enquiry_id in response.references
    assert verify_message_id(response.message_id, [key]) == ref
    show = mb.case_show(ref)
    assert field(show, "Status") == "Completed"
    assert ref in mb.cli("cases", "list", "--status", "completed")
    assert ref not in mb.cli("cases", "list", "--status", "in_progress")

    # 6. A vacation reply to the response must not reopen it; the member's own reply -----
    # within 5 working days does, and the lead officer is told.
    _, raw = gmail_vacation(response)
    imap_mailbox.append(raw)
    reopen_body = f"{REOPEN_TEXT}\nCould someone look again please?\n\nJane"
    _, raw = outlook_reply(response, sender=MEMBER, name="Cllr Jane Smith", answer=reopen_body)
    imap_mailbox.append(raw)
    out = mb.run_once()
    assert "0 new cases, 2 updates, 0 quarantined" in out and "1 emails sent" in out, out
    [reopened] = mb.new_mail()
    case_mail.append(reopened)
    assert reopened.rcpt_tos == sorted([OFFICER, COORDINATOR])
    assert reopened.subject == f"[{ref}] Reopened by the councillor: {SUBJECT}"
    assert REOPEN_TEXT in reopened.text
    assert verify_message_id(reopened.message_id, [key]) == ref
    assert enquiry_id in reopened.references
    show = mb.case_show(ref)
    assert field(show, "Status") == "In progress"
    [reopen_event] = timeline_rows(show, "reopened")  # once: the vacation reply did nothing
    assert "1 times" in reopen_event
    assert len(timeline_rows(show, "auto_reply_received")) == 2
    assert ref in mb.cli("cases", "list", "--status", "in_progress")

    # The whole thread: one Outlook conversation, every email of ours signed. -----------
    assert len(case_mail) == 8 and len(smtp_server.messages) == 8
    headers = {s.thread_index[:22] for s in case_mail}
    assert len(headers) == 1, [s.msg["Thread-Index"] for s in case_mail]
    assert all(len(s.thread_index) == 27 for s in case_mail)
    assert all(s.message_id.startswith(f"mb.{ref}.") for s in case_mail)
    assert all(s.msg["X-Mailbridge-Loop"] == "example.gov.uk" for s in case_mail)
    # The case keeps every message it was given, in and out.
    show = mb.case_show(ref)
    assert len(timeline_rows(show, "email in")) == 8
    assert len(timeline_rows(show, "email out")) == 8
    assert len(timeline_rows(show, "delivery sent")) == 8  # nothing pending or failed

    # Every inbound message was handled and moved; nothing was quarantined.
    assert imap_mailbox.uids("INBOX") == []
    assert len(imap_mailbox.uids("Processed")) == 8
    assert imap_mailbox.uids("Quarantine") == []
    assert "Quarantine is empty" in mb.cli("quarantine", "list")

    # The extension, checked last so that the rest of the story is exercised even while
    # these fail. `#extend 3 waiting for the contractor` must never bring the deadline
    # forward (it was sent on the day of assignment, with 10 working days still to go),
    # and `case show` must show the extension with its reason.
    original = due_date(ack.text, r"Reply due by:\s+")
    promised = due_date(holding.text, r"due by\s+")
    assert promised >= original, (
        f"after #extend 3 the member was told {promised}, earlier than the original {original}"
    )
    assert "waiting for the contractor" in show_after_holding, show_after_holding
