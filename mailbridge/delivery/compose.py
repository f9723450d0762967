"""Outgoing email as bytes: our Message-IDs and the headers that keep loops away (pure)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email import quoprimime
from email.generator import NLCRE, BytesGenerator
from email.header import Header
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.policy import compat32
from email.utils import format_datetime, formataddr
from io import BytesIO

from mailbridge.store.models import utcnow

LOOP_HEADER = "X-Mailbridge-Loop"
# CR, LF and other controls would end a header early (or make the stdlib refuse it).
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]+")


_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def _filetime(moment: datetime) -> int:
    """100-nanosecond intervals since 1601, as Windows counts time."""
    delta = moment.astimezone(UTC) - _FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def thread_index(thread_seed: str, started: datetime, now: datetime) -> str:
    """An Outlook Thread-Index ([MS-OXOMSG] 2.2.1.3) so Outlook groups a case's mail.

    The 22-byte header is the same for every email of the case: the start time's top 40
    bits and a GUID derived from `thread_seed` (the reference). One 5-byte response level
    follows, carrying the time since the start.
    """
    start = _filetime(started) >> 24 << 24
    guid = hashlib.md5(thread_seed.encode(), usedforsecurity=False).digest()
    header = b"\x01" + (start >> 24).to_bytes(5, "big") + guid
    delta = max(0, _filetime(now) - start)
    if delta < 1 << 49:
        code, bits = 0, (delta >> 18) & 0x7FFFFFFF
    else:
        code, bits = 1, (delta >> 23) & 0x7FFFFFFF
    level = ((code << 31 | bits) << 8 | secrets.randbits(8)).to_bytes(5, "big")
    return base64.b64encode(header + level).decode()


class _ShortHeadersAsIs(type(compat32)):  # type: ignore[misc]
    """compat32, but a header that already fits on one line is written as it is.

    compat32 runs every header through the email.header.Header folding machinery, which is
    most of the cost of composing a message; for a short ASCII value it returns the value
    unchanged, so skipping it there gives the same bytes. Anything longer, non-ASCII or a
    Header object (encoded words) is folded by compat32 as before.
    """

    def _fold(self, name: str, value: object, sanitize: bool) -> str:
        if (
            type(value) is str
            and value.isascii()
            and len(name) + 2 + len(value) <= (self.max_line_length or 78)
            and "\r" not in value
            and "\n" not in value
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)


_CRLF = _ShortHeadersAsIs(linesep="\r\n", max_line_length=78)

# Any of CR, LF or CRLF ends a line: how the stdlib generator splits a payload.
_LINE_ENDS = NLCRE


class _WholeLines(BytesGenerator):
    """BytesGenerator, writing a payload's lines in one call instead of two per line.

    The stdlib writes each line and then its line end, ~200 calls an acknowledgement; the
    bytes are the same (table-tested against the stdlib generator in tests/test_compose.py).
    """

    def _write_lines(self, lines: str) -> None:
        if lines:
            self.write(self._NL.join(_LINE_ENDS.split(lines)))


def _as_bytes(msg: Message) -> bytes:
    out = BytesIO()
    _WholeLines(out, mangle_from_=False, policy=_CRLF).flatten(msg)
    return out.getvalue()


# RFC 5322 2.1.1: no line longer than 998 characters; 7bit text must keep to it.
_MAX_LINE = 998


def _text_part(text: str, subtype: str) -> Message:
    """A text/* part: ASCII with lines a 7bit path carries as they are needs no encoding,
    anything else is quoted-printable UTF-8 (as MIMEText with a QP charset writes it).

    Built header by header: MIMEText's charset and parameter machinery was most of the cost
    of composing an acknowledgement.
    """
    part = Message()
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["MIME-Version"] = "1.0"
    if text.isascii() and max(map(len, _LINE_ENDS.split(text))) <= _MAX_LINE:
        part["Content-Transfer-Encoding"] = "7bit"
        part.set_payload(text)
    else:
        part["Content-Transfer-Encoding"] = "quoted-printable"
        # As email.charset does: the UTF-8 bytes, one character per byte, then encoded.
        part.set_payload(quoprimime.body_encode(text.encode("utf-8").decode("latin-1")))
    return part


def _clean(value: str) -> str:
    """One line: a subject taken from incoming mail may carry encoded CR/LF."""
    return _CONTROLS.sub(" ", value).strip()


def _header(value: str) -> str | Header:
    """ASCII stays as it is; anything else becomes RFC 2047 encoded words."""
    value = _clean(value)
    return value if value.isascii() else Header(value, "utf-8")


def _addresses(addresses: Sequence[str]) -> str:
    return ", ".join(_clean(a) for a in addresses)


def _msgid(value: str) -> str:
    """Callers may pass an id with or without its angle brackets; write it with one pair."""
    return f"<{_clean(value).strip('<>')}>"


def _boundary() -> str:
    """ "=_" never occurs in quoted-printable or base64 text, so no part can contain it and
    the generator need not search the body for a collision (a regex per message)."""
    return "=_mb_" + secrets.token_hex(12)


def compose(
    *,
    sender: str,
    sender_name: str,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None,
    message_id: str,
    cc: Sequence[str] = (),
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    auto_submitted: str | None = "auto-replied",
    extra_headers: Mapping[str, str] | None = None,
    date: datetime | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
) -> bytes:
    """A complete RFC 5322 message (CRLF line ends), text plus an HTML alternative.

    Built with the compat32 MIME classes: they format headers without re-parsing them,
    several times faster than EmailMessage on the acknowledgement path.
    """
    body: Message = _text_part(text, "plain")
    if html is not None:
        alternative = MIMEMultipart("alternative", boundary=_boundary())
        alternative.attach(body)
        alternative.attach(_text_part(html, "html"))
        body = alternative
    if attachments:
        mixed = MIMEMultipart("mixed", boundary=_boundary())
        mixed.attach(body)
        for filename, content_type, payload in attachments:
            maintype, _, subtype = content_type.partition("/")
            if not (maintype and subtype):  # not a MIME type: send it as opaque bytes
                maintype, subtype = "application", "octet-stream"
            part = MIMEApplication(payload, _subtype=subtype)
            if maintype != "application":
                part.replace_header("Content-Type", f"{maintype}/{subtype}")
            part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", filename))
            mixed.attach(part)
        body = mixed
    msg = body
    msg["From"] = formataddr((_clean(sender_name), _clean(sender)), charset="utf-8")
    msg["To"] = _addresses(to)
    if cc:
        msg["Cc"] = _addresses(cc)
    msg["Subject"] = _header(subject)
    msg["Date"] = format_datetime(date or utcnow())
    msg["Message-ID"] = _msgid(message_id)
    if in_reply_to and in_reply_to.strip("<> "):
        msg["In-Reply-To"] = _msgid(in_reply_to)
    refs = [r for r in dict.fromkeys(_msgid(r) for r in references) if r != "<>"]
    if refs:
        msg["References"] = " ".join(refs)
    if auto_submitted:
        msg["Auto-Submitted"] = auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"
    msg[LOOP_HEADER] = sender.rpartition("@")[2]
    for name, value in (extra_headers or {}).items():
        msg[name] = _header(value)
    # MIME-Version first among the MIME headers, as mail clients expect it.
    return _as_bytes(msg)
