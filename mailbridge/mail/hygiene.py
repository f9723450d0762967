"""Mail that must never be treated as an enquiry, decided before any routing (pure).

`classify(parsed, own_addresses)` gives one verdict, or None for ordinary mail. The checks
run in this order, and the first that matches decides:

1. `Loop`: our own mail coming back. It carries our `X-Mailbridge-Loop` header, or its
   From is one of our own addresses.
2. `Bounce`: a delivery status notification or non-delivery report. Bounces often carry
   `Auto-Submitted: auto-replied` too, so they are recognised before auto-replies. The
   signs: an RFC 3464 `message/delivery-status` part (or `multipart/report;
   report-type=delivery-status`), `X-Failed-Recipients`, Exchange's
   `X-MS-Exchange-Message-Is-Ndr`, a MAILER-DAEMON or postmaster sender, or a bounce
   subject ("Undeliverable:", "Undelivered Mail Returned to Sender", "Delivery Status
   Notification (Failure)", ...) when something else shows the mail is machine-made.
   The bounced message is found by the Message-ID of the returned `message/rfc822` or
   `text/rfc822-headers` part, else the report's `X-Original-Message-ID`, else an
   In-Reply-To/References or quoted `Message-ID:` line that is one of ours (`mb.` ids).
3. `AutoReply`: out-of-office notices, RFC 3834 auto-replies, list and bulk mail.

Deliberately not a sign on its own: `X-Auto-Response-Suppress`. It asks the receiver not
to auto-reply to this message ([MS-OXCMAIL] 2.1.3.2.20); it does not say that the message
is one, and ordinary Outlook mail carries it ("DR, OOF, AutoReply"). Helpdesks that
filtered on it lost real mail. It counts only with `X-MS-Exchange-Inbox-Rules-Loop`,
which Exchange adds when the mailbox's out-of-office agent sends the message.

`may_answer_automatically(address, parsed)` says whether we may send automatic mail
(an acknowledgement, a status reply) to an address.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr

from mailbridge.mail.parsing import ParsedEmail, normalise_message_id

LOOP_HEADER = "x-mailbridge-loop"
DIAGNOSTIC_LIMIT = 300

# --- verdicts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Loop:
    """Our own mail coming back, or mail from our own address."""

    reason: str


_STILL_TRYING = frozenset({"delayed", "relayed", "delivered", "expanded"})
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_SMTP_REPLY = re.compile(r"(?<![\d.])([245])\d\d(?=[ -]|$)")


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    address: str
    status: str | None  # RFC 3463 enhanced status code: "5.1.1", "4.4.7"
    diagnostic: str | None  # the server's words, one line, at most DIAGNOSTIC_LIMIT characters
    action: str | None = None  # the DSN Action: "failed", "delayed"; None when not stated

    @property
    def permanent(self) -> bool:
        """The address itself is refused: what gets an address flagged (no more mail to it).

        A 5.x.x status; with no status, a 5xx reply in the diagnostic ("550 ..."), else
        Action "failed". "delayed" is never permanent, and neither is a 4.x.x status even
        with Action "failed" (Exchange's "4.4.7 message expired": this message was given
        up on, but the address may well be fine; `action` still says it did not arrive).
        """
        if self.action in _STILL_TRYING:
            return False
        if self.status:
            return self.status.startswith("5")
        text = (self.diagnostic or "").lstrip()
        code = _SMTP_REPLY.match(text) or _ENHANCED.search(text)
        if code is not None:
            return code.group(1) == "5"
        return self.action == "failed"


@dataclass(frozen=True, slots=True)
class Bounce:
    """A delivery status notification or non-delivery report about mail we sent."""

    failures: tuple[FailedRecipient, ...]
    # Normalised (no <>) Message-ID of the message that bounced. It is the returned
    # message's own id: backscatter (bounces of mail forged in our name) carries ids that
    # are not ours, so look it up rather than trust it.
    original_message_id: str | None
    reason: str
    delayed: bool = False  # the notice says delivery is still being tried

    @property
    def permanent(self) -> bool:
        """A recipient's address was refused (FailedRecipient.permanent). With no recipient
        readable, any report but a "delivery delayed" one is taken as final."""
        if self.failures:
            return any(f.permanent for f in self.failures)
        return not self.delayed


@dataclass(frozen=True, slots=True)
class AutoReply:
    """Out-of-office, RFC 3834 auto-reply, read receipt, list or bulk mail."""

    kind: str  # "out_of_office" | "auto_reply" | "list" | "bulk"
    reason: str


Verdict = Loop | Bounce | AutoReply


# --- small helpers ------------------------------------------------------------------------


def _one_line(text: str | None, limit: int = DIAGNOSTIC_LIMIT) -> str | None:
    if not text:
        return None
    line = " ".join(text.split())
    if not line:
        return None
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _quote(text: str, limit: int = 80) -> str:
    return f"“{_one_line(text, limit)}”"


def _local_part(address: str | None) -> str:
    return (address or "").rpartition("@")[0].lower()


def _domains(addresses: Iterable[str]) -> set[str]:
    return {a.strip().lower().rpartition("@")[2] for a in addresses if "@" in a}


def _is_ours(message_id: str | None, own_domains: Collection[str]) -> bool:
    """One of our Message-IDs (`mb.MQ-2026-00042.<rand>.<sig>@domain`, see compose.py)."""
    if not message_id or not message_id.lower().startswith("mb."):
        return False
    return not own_domains or message_id.rpartition("@")[2].lower() in own_domains


def _report_type(headers: Mapping[str, str]) -> str | None:
    content_type = headers.get("content-type", "")
    if not content_type.lower().lstrip().startswith("multipart/report"):
        return None
    match = re.search(r"report-type\s*=\s*\"?([\w.-]+)", content_type, re.IGNORECASE)
    return match.group(1).lower() if match else ""


# --- 1. loops -----------------------------------------------------------------------------


def _loop(parsed: ParsedEmail, own_addresses: Collection[str]) -> Loop | None:
    if LOOP_HEADER in parsed.headers:
        return Loop("the message carries our own loop header: it is mail we sent")
    own = {a.strip().lower() for a in own_addresses}
    if parsed.from_address and parsed.from_address in own:
        return Loop(f"the message is from our own address {parsed.from_address}")
    return None


# --- 2. bounces ---------------------------------------------------------------------------

_BOUNCE_SENDERS = re.compile(r"^(?:mailer[-_.]?daemon|postmaster)$")
# Subjects that begin a non-delivery or delay report, in the languages Exchange, Gmail,
# Postfix, Exim, Sendmail and qmail write them.
_BOUNCE_SUBJECT = re.compile(
    r"""^\s*(?:
        undeliverable\b | undelivered\s+mail | undeliverable\s+mail
      | delivery\s+status\s+notification | delivery\s+(?:has\s+)?failed | delivery\s+failure
      | delivery\s+delayed | delayed\s+mail | delivery\s+notification
      | mail\s+delivery\s+(?:failed|failure|system|subsystem) | returned\s+mail\b
      | failure\s+notice | non[-\s]?delivery | message\s+not\s+delivered
      | warning:\s+could\s+not\s+send | mail\s+system\s+error
      | unzustellbar | nicht\s+zustellbar | non\s+remis | non\s+distribuable
      | non\s+recapitabile | no\s+se\s+puede\s+entregar | no\s+entregado | onbestelbaar
      | olevererbart | kan\s+ikke\s+leveres | ikke\s+levert | kunne\s+ikke\s+leveres
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_DELAY_SUBJECT = re.compile(
    r"""^\s*(?:delivery\s+delayed | delayed\s+mail | warning:\s+could\s+not\s+send
        | delivery\s+status\s+notification\s+\(delay\) | verzögert | retardée?)""",
    re.IGNORECASE | re.VERBOSE,
)
_RETURNED_PARTS = frozenset({
    "message/rfc822", "text/rfc822-headers", "message/rfc822-headers",
    "message/global", "message/global-headers",
})  # fmt: skip
_QUOTED_MESSAGE_ID = re.compile(r"^[ \t>]*message-id:[ \t]*<([^<>\s]+)>", re.I | re.M)
_TEXT_RECIPIENT = re.compile(r"^[ \t]*<([^<>\s@]+@[^<>\s]+)>:?", re.MULTILINE)


def _dsn_address(value: str | None) -> str | None:
    """`rfc822; <Someone@Example.org>` -> `someone@example.org`; None if not an address."""
    if not value:
        return None
    address = value.split(";", 1)[1] if ";" in value else value
    address = address.strip().strip("<>").strip().lower()
    if "@" not in address or any(ch.isspace() for ch in address):
        return None
    if address.startswith(("imceaex-", "imcea")):  # an Exchange-internal encoded name
        return None
    return address


def _diagnostic(value: str | None) -> str | None:
    """`smtp; 550 5.1.1 ...` -> `550 5.1.1 ...`, on one line."""
    if not value:
        return None
    return _one_line(re.sub(r"^\s*[a-z][a-z0-9-]*\s*;\s*", "", value, flags=re.IGNORECASE))


def _status(*texts: str | None) -> str | None:
    for text in texts:
        match = _ENHANCED.search(text or "")
        if match:
            return ".".join(match.groups())
    return None


def _dsn_recipients(blocks: Iterable[Mapping[str, str]]) -> list[Mapping[str, str]]:
    return [b for b in blocks if "final-recipient" in b or "original-recipient" in b]


def _from_report(blocks: Iterable[Mapping[str, str]]) -> list[FailedRecipient]:
    out: list[FailedRecipient] = []
    for block in _dsn_recipients(blocks):
        # The address we sent to: Original-Recipient, unless the reporting MTA only knew
        # the address after rewriting (Final-Recipient).
        address = _dsn_address(block.get("original-recipient")) or _dsn_address(
            block.get("final-recipient")
        )
        if not address:
            continue
        action = (block.get("action") or "").strip().lower().split(" ", 1)[0] or None
        if action in _STILL_TRYING - {"delayed"}:
            continue  # delivered, relayed or expanded: nothing failed for this one
        diagnostic = _diagnostic(block.get("diagnostic-code"))
        status = _status(block.get("status"), diagnostic)
        out.append(FailedRecipient(address, status, diagnostic, action))
    return out


def _from_text(address: str, text: str) -> tuple[str | None, str | None]:
    """(status, diagnostic) for an address from a plain-text report (Exim, Postfix, qmail):
    the first server reply after the address, with its continuation lines."""
    at = text.lower().find(address.lower())
    if at < 0:
        return None, None
    lines = text[at + len(address) : at + len(address) + 1000].split("\n")
    for i, line in enumerate(lines):
        if not line.strip() and i > 1:
            break  # the end of this recipient's paragraph
        said = re.split(r"\bsaid:\s*", line, maxsplit=1)
        reply = said[1] if len(said) == 2 else line.strip().lstrip(":").strip()
        if not (_SMTP_REPLY.match(reply) or _ENHANCED.match(reply)):
            continue
        more = []
        for follow in lines[i + 1 :]:
            if not follow.strip() or not follow[:1].isspace():
                break
            more.append(follow)
        diagnostic = _one_line(" ".join([reply, *more]))
        return _status(diagnostic), diagnostic
    return None, None


def _failures(parsed: ParsedEmail, delayed: bool) -> list[FailedRecipient]:
    failures = _from_report(parsed.delivery_status)
    listed = {f.address for f in failures}
    try:
        named = [a for _, a in getaddresses([parsed.headers.get("x-failed-recipients", "")])]
    except (TypeError, ValueError, IndexError):
        named = []
    # Exim and Gmail list only recipients that failed for good in X-Failed-Recipients.
    extra = [(a.strip().lower(), "failed") for a in named if "@" in a]
    if not failures and not extra:
        # A plain-text report: Postfix and qmail name each recipient as "<address>:".
        action = "delayed" if delayed else None
        extra = [(m.lower(), action) for m in _TEXT_RECIPIENT.findall(parsed.body_text)]
    for address, action in extra:
        if address in listed:
            continue
        listed.add(address)
        status, diagnostic = _from_text(address, parsed.body_text)
        failures.append(FailedRecipient(address, status, diagnostic, action))
    return failures


def _returned_message_id(parsed: ParsedEmail, own_domains: Collection[str]) -> str | None:
    for attachment in parsed.attachments:
        if attachment.content_type not in _RETURNED_PARTS:
            continue
        try:
            headers = BytesHeaderParser(policy=compat32).parsebytes(attachment.payload)
            found = normalise_message_id(str(headers.get("Message-ID") or ""))
        except Exception:  # noqa: BLE001 - a mangled returned message: try the next sign
            found = None
        if found:
            return found
    for block in parsed.delivery_status:
        for name in ("x-original-message-id", "original-message-id"):
            found = normalise_message_id(block.get(name))
            if found:
                return found
    for candidate in (parsed.in_reply_to, *reversed(parsed.references)):
        if _is_ours(candidate, own_domains):
            return candidate
    for candidate in _QUOTED_MESSAGE_ID.findall(parsed.body_text):  # Exim quotes the message
        if _is_ours(candidate, own_domains):
            return candidate
    return None


def _bounce_signs(parsed: ParsedEmail) -> list[str]:
    headers = parsed.headers
    signs: list[str] = []
    if _dsn_recipients(parsed.delivery_status):
        signs.append("a delivery status report")
    elif _report_type(headers) == "delivery-status":
        signs.append("a multipart/report of type delivery-status")
    if headers.get("x-failed-recipients", "").strip():
        signs.append("an X-Failed-Recipients header")
    if "x-ms-exchange-message-is-ndr" in headers:
        signs.append("Exchange's non-delivery report marker")
    sender = parsed.from_address
    if sender and _BOUNCE_SENDERS.match(_local_part(sender)):
        signs.append(f"sent by {sender}")
    if _BOUNCE_SUBJECT.match(parsed.subject):
        machine_made = (
            parsed.return_path == ""
            or _auto_submitted(headers) is not None
            or any(a.content_type in _RETURNED_PARTS for a in parsed.attachments)
        )
        if signs or machine_made:
            signs.append(f"the subject {_quote(parsed.subject)}")
    return signs


def _bounce(parsed: ParsedEmail, own_domains: Collection[str]) -> Bounce | AutoReply | None:
    signs = _bounce_signs(parsed)
    if not signs:
        return None
    recipients = _dsn_recipients(parsed.delivery_status)
    if recipients and all(
        (b.get("action") or "").strip().lower().startswith(("delivered", "relayed", "expanded"))
        for b in recipients
    ):
        return AutoReply("auto_reply", "a delivery report saying the message was delivered")
    delayed = bool(_DELAY_SUBJECT.match(parsed.subject))
    failures = _failures(parsed, delayed)
    if failures and all(f.action == "delayed" for f in failures):
        delayed = True
    original = _returned_message_id(parsed, own_domains)
    named = [f"{f.address} {f.status or f.action or 'failed'}" for f in failures[:5]]
    summary = "; ".join(named) + (f" and {len(failures) - 5} more" if len(failures) > 5 else "")
    what = "delivery delayed" if delayed else "undelivered"
    reason = f"a bounce ({', '.join(signs)}): {what}" + (f": {summary}" if summary else "")
    return Bounce(tuple(failures), original, reason, delayed)


# --- 3. auto-replies, out-of-office, lists and bulk ---------------------------------------

_OOO_PHRASES = (
    r"automatic\s+reply", r"auto[-\s]?reply", r"auto[-\s]?response", r"automatic\s+response",
    r"out\s+of\s+(?:the\s+)?office", r"out-of-office", r"OOO", r"OOF",
    r"abwesenheitsnotiz", r"automatische\s+antwort", r"abwesend",
    r"r[ée]ponse\s+automatique", r"absence\s+du\s+bureau", r"absent\s+du\s+bureau",
    r"risposta\s+automatica", r"fuori\s+sede", r"fuori\s+ufficio",
    r"respuesta\s+autom[áa]tica", r"fuera\s+de\s+la\s+oficina",
    r"resposta\s+autom[áa]tica", r"ausente",
    r"automatisch\s+antwoord", r"afwezig", r"niet\s+aanwezig",
    r"fr[åa]nvaro", r"autosvar", r"automatisk\s+svar", r"frav[æe]r", r"ikke\s+p[åa]\s+kontoret",
    r"automaattinen\s+vastaus", r"poissa",
    r"automatyczna\s+odpowied[źz]", r"odpowied[źz]\s+automatyczna",
    r"automatick[áa]\s+odpov[ěe][ďd]", r"automatikus\s+v[áa]lasz",
    r"ateb\s+awtomatig", r"allan\s+o'r\s+swyddfa",  # Welsh: councils in Wales use it
)  # fmt: skip
# An out-of-office subject starts with one of the phrases: in brackets ("[OOO] ..."), or
# followed by a colon or dash ("Automatic reply: ...", "Abwesenheitsnotiz: ..."), by
# nothing, or by the words such notices use ("Out of office until 7 December", "Out of
# Office AutoReply"), so that "Out of office hours noise from the depot" stays an enquiry.
_PHRASE = "(?:" + "|".join(_OOO_PHRASES) + ")"
_OOO_SUBJECT = re.compile(
    rf"^\s*(?:\[{_PHRASE}\]|\({_PHRASE}\)|{_PHRASE}(?:\s*[:\-–—|]|\s*$"
    r"|\s+(?:until|till|reply|auto\w*|notice|notification|message|from|on|re)\b))",
    re.IGNORECASE,
)
_AUTOREPLY_HEADERS = (
    "x-autoreply", "x-autorespond", "x-autoreply-from", "x-mail-autoreply", "x-autogenerated",
    "x-autoresponder",
)  # fmt: skip
_FALSE = frozenset({"no", "false", "0", "off"})  # "X-Autoreply: no"; an empty value counts


def _auto_submitted(headers: Mapping[str, str]) -> str | None:
    """The Auto-Submitted value when it says the mail is automatic (anything but "no")."""
    value = headers.get("auto-submitted")
    if value is None:
        return None
    keyword = re.match(r"\s*([\w-]*)", value)
    if keyword is None or keyword.group(1).lower() in ("no", ""):
        return None
    return value.strip()


def _tokens(value: str) -> set[str]:
    return {t for t in re.split(r"[\s,;]+", value.strip().lower()) if t}


def _precedence(headers: Mapping[str, str]) -> str | None:
    for name in ("precedence", "x-precedence"):
        value = headers.get(name, "").strip().lower()
        if value:
            return value.split()[0].strip(";,")
    return None


def _auto_reply(parsed: ParsedEmail) -> AutoReply | None:
    headers = parsed.headers
    suppress = _tokens(headers.get("x-auto-response-suppress", ""))
    if "x-ms-exchange-inbox-rules-loop" in headers and suppress & {"all", "oof"}:
        return AutoReply(
            "out_of_office",
            "an Exchange out-of-office notice (X-Auto-Response-Suppress with "
            "X-MS-Exchange-Inbox-Rules-Loop)",
        )
    if _OOO_SUBJECT.match(parsed.subject):
        return AutoReply("out_of_office", f"an out-of-office subject {_quote(parsed.subject)}")
    auto_submitted = _auto_submitted(headers)
    if auto_submitted is not None:
        away = re.search(r"vacation|owner-email\s*=", auto_submitted, re.IGNORECASE)
        kind = "out_of_office" if away else "auto_reply"
        return AutoReply(kind, f"Auto-Submitted: {_one_line(auto_submitted, 80)}")
    for name in _AUTOREPLY_HEADERS:
        if name in headers and headers[name].strip().lower() not in _FALSE:
            return AutoReply("auto_reply", f"an auto-reply header ({name})")
    precedence = _precedence(headers)
    if precedence == "auto_reply":
        return AutoReply("auto_reply", "Precedence: auto_reply")
    for name in ("list-id", "list-unsubscribe"):
        if name in headers:
            return AutoReply("list", f"mailing-list mail ({name}: {_one_line(headers[name], 80)})")
    if precedence == "list":
        return AutoReply("list", "Precedence: list")
    if precedence in ("bulk", "junk"):
        return AutoReply("bulk", f"Precedence: {precedence}")
    report = _report_type(headers)
    if report == "disposition-notification":
        return AutoReply("auto_reply", "a read receipt (message disposition notification)")
    if parsed.return_path == "":
        return AutoReply("auto_reply", "a null envelope sender (Return-Path: <>)")
    return None


# --- the classifier -----------------------------------------------------------------------


def classify(parsed: ParsedEmail, own_addresses: Collection[str]) -> Verdict | None:
    """Loop, bounce, auto-reply (in that order), or None for mail a person wrote."""
    return (
        _loop(parsed, own_addresses)
        or _bounce(parsed, _domains(own_addresses))
        or _auto_reply(parsed)
    )


# Robot and role local parts that must never get automatic mail (RFC 3834 section 2
# names MAILER-DAEMON, LISTSERV, majordomo, owner-* and *-request). "+tag" and "-suffix"
# variants count: bounces+123=example.org@..., noreply-alerts@...
_NO_ANSWER = re.compile(
    r"""^(?:
        (?:no[-_.]?reply | do[-_.]?not[-_.]?reply | dont[-_.]?reply | mailer[-_.]?daemon
         | postmaster | bounces? | listserv | majordomo | microsoftexchange[0-9a-f]{32}
        )(?:[-+_.=].*)?
      | owner-.+ | .+-(?:request|owner|bounces?)
    )$""",
    re.IGNORECASE | re.VERBOSE,
)


def may_answer_automatically(address: str | None, parsed: ParsedEmail | None = None) -> bool:
    """Whether automatic mail (acknowledgement, status reply) may go to this address.

    Never to an empty or unreadable address, a no-reply, mailer-daemon, postmaster,
    bounce or list-robot address; and, given the message that prompts it, never in answer
    to a bounce, auto-reply, list or bulk mail, our own mail, or a null Return-Path.
    """
    if not address or not address.strip():
        return False
    _, addr = parseaddr(address)
    addr = addr.strip().lower()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or _NO_ANSWER.match(local):
        return False
    if parsed is not None:
        if parsed.return_path == "":
            return False
        if classify(parsed, ()) is not None:
            return False
    return True
