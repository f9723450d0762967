"""Raw bytes -> ParsedEmail with mail-parser. Never raises: defects are recorded instead.

mail-parser gives the decoded headers, addresses, dates and defects. Bodies and
attachments are read from the MIME tree it parsed (`mail.message`) part by part with
`get_payload(decode=True)`, so attachment bytes are exactly what the sender attached and
an attached email stays one `.eml` file instead of being flattened into the body.
"""

from __future__ import annotations

import binascii
import codecs
import email.policy
import hashlib
import io
import json
import mimetypes
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.errors import InvalidBase64LengthDefect, MessageError
from email.feedparser import BytesFeedParser
from email.generator import BytesGenerator
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.policy import Compat32
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import PurePath

import html2text
import webencodings

from mailbridge.mail.attachments import TnefError, held_back, is_tnef, unpack_tnef


@dataclass(frozen=True, slots=True)
class ParsedAttachment:
    filename: str  # sanitised: no separators or control characters, capped, unique in message
    content_type: str
    payload: bytes  # decoded bytes, exactly as the sender attached them
    inline: bool = False
    content_id: str | None = None
    # Why it must not be sent on to members or officers (attachments.held_back), or None.
    held: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedEmail:
    raw_sha256: str
    # "<Message-ID> content:<content_sha256>", or "sha256:<hex>" of the raw bytes without a
    # Message-ID: a second copy is the same message, another that reuses the id is not.
    dedupe_key: str
    message_id: str | None  # normalised: no angle brackets, surrounding space removed
    from_address: str | None  # lowercased addr-spec, None when unparsable or ambiguous
    from_name: str | None
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    reply_to: tuple[str, ...] = ()
    subject: str = ""
    date: datetime | None = None  # naive UTC, from the Date header
    received_at: datetime | None = None  # naive UTC, from the first (topmost) Received header
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    body_text: str = ""
    body_html: str | None = None
    attachments: tuple[ParsedAttachment, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case name -> first value
    defects: tuple[str, ...] = ()
    # The topmost Return-Path (the envelope sender our server saw), lower-case, no angle
    # brackets; "" for the null path `<>` that bounces and auto-replies use; None if absent.
    return_path: str | None = None
    # The fields of any message/delivery-status (RFC 3464) or message/global-delivery-status
    # part outside attached emails: one mapping per block (the per-message block, then one
    # per recipient), lower-case name -> first value, unfolded.
    delivery_status: tuple[Mapping[str, str], ...] = ()
    # Why the message is more than mailbridge reads (too many MIME parts, nested too deep);
    # what was read up to the limit is kept, and routing quarantines it.
    too_complex: str | None = None
    # Why only the header was read: the message was larger than mailbridge takes (the
    # mailbox source gave its header alone); routing quarantines it.
    too_large: str | None = None
    # Why the sender cannot be told (several From headers or mailboxes, a display name that
    # shows another address); None when From names one mailbox plainly.
    sender_problem: str | None = None
    # sha256 of what the message says (sender, To and Cc, subject, bodies, attachments), not
    # of the trace headers a second delivery adds (Received, Delivered-To, Return-Path, X-).
    content_sha256: str = ""
    # Every top-level header field in order, top first: (lower-case name, value unfolded,
    # encoded words left as they are). Which Authentication-Results is the gateway's depends
    # on where it stands (mail/authentication.py).
    header_fields: tuple[tuple[str, str], ...] = ()


_ID = re.compile(r"<([^<>\s]+)>")
_WS = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1 (0x9B is a terminal CSI)
_UNSAFE = re.compile(r'[/\\:*?"<>|]')
# Direction controls (bidi embeddings, overrides, isolates and marks): "invoice<U+202E>fdp.exe"
# shows as "invoiceexe.pdf" wherever a file is listed. Dropped from attachment names; the
# on-line form refuses them outright (cases/submissions.py).
DIRECTION_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                     *(f"lpt{i}" for i in range(1, 10))}  # fmt: skip


# html2text escapes line starts that Markdown would read as a list: "1\.", "\-", "\+".
_MD_LIST_ESCAPE = re.compile(r"^([ \t]*\d*)\\([.+-])", re.MULTILINE)
_TRAILING_SPACE = re.compile(r"[ \t\xa0]+$", re.MULTILINE)


class _Raw8bitPolicy(Compat32):
    """compat32, but a header with raw 8-bit bytes is fetched as a surrogate-escaped str.

    compat32 wraps such a value in a `Header` whose str() is U+FFFD per byte, so a raw
    UTF-8 Subject, From or filename (RFC 6532, or a careless portal) lost its text.
    `_header_text` decodes the surrogate-escaped bytes as UTF-8, else windows-1252.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_RAW_8BIT = _Raw8bitPolicy()


class _VerbatimPolicy(Compat32):
    """compat32 that writes each header as it was read: its folding, spacing and 8-bit bytes.

    For re-serialising an attached email; compat32 would refold long headers.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        return f"{name}: {value}{self.linesep}".encode("ascii", "surrogateescape")


# --- small pure helpers ------------------------------------------------------------------


def normalise_message_id(value: str | None) -> str | None:
    """`<abc@host>` -> `abc@host`; None for empty or space-only values."""
    if not value:
        return None
    value = str(value).strip()
    match = _ID.search(value)
    if match:
        return match.group(1)
    value = value.strip("<> \t\r\n")
    if not value or _WS.search(value):
        return None
    return value


# The Encoding Standard's gbk decoder is its gb18030 decoder (a superset of GBK).
_DECODER_OF = {"gbk": "gb18030"}


def _codec(charset: str) -> str | None:
    """The Python codec for a charset label, mapped as the WHATWG Encoding Standard maps it
    (as browsers and Thunderbird do): `gb2312` is read as GBK, `iso-8859-1` and `latin1` as
    windows-1252, `ks_c_5601-1987` as Windows' EUC-KR (cp949)... Outlook labels smart
    quotes and the euro sign as ISO-8859-1, and GBK as gb2312. A label the standard does not
    know (UTF-7) or decodes to nothing ("replacement") goes to Python's own codecs. None: no
    such charset, or ASCII, whose 8-bit bytes show the label is wrong anyway."""
    label = charset.strip().strip("\"'").strip()
    found = webencodings.lookup(label)
    name = found.codec_info.name if found is not None and found.name != "replacement" else label
    try:
        if codecs.lookup(label).name == "ascii":
            return None
    except LookupError:
        pass
    try:
        return codecs.lookup(_DECODER_OF.get(name, name)).name
    except LookupError:
        return None


_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


def _damaged_utf8(data: bytes) -> str | None:
    """UTF-8 with a few bad bytes (a cut multi-byte character), each bad run replaced by
    U+FFFD and every good character kept; None when the bytes do not look like UTF-8 (no
    multi-byte character, or more bad runs than good characters: windows-1252 then)."""
    good = len(_UTF8_SEQUENCE.findall(data))
    if not good:
        return None
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.count(b"\xef\xbf\xbd")
    return text if bad <= good else None


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Text in its declared charset; undeclared or wrong: UTF-8 (its good characters kept
    when a few bytes are damaged), else the declared charset with only the bad bytes
    replaced, else windows-1252.

    NUL characters are dropped: they carry no meaning in mail text and PostgreSQL
    refuses them in text columns.
    """
    codec = _codec(charset) if charset else None
    for candidate in (codec, "utf-8"):
        if candidate:
            try:
                return data.decode(candidate).replace("\x00", "")
            except (LookupError, UnicodeDecodeError, ValueError):
                continue
    text = _damaged_utf8(data)
    if text is None:  # the declared charset's good characters kept; failed UTF-8 was a guess
        text = data.decode(codec if codec not in (None, "utf-8") else "windows-1252", "replace")
    return text.replace("\x00", "")


def _header_text(value: object) -> str:
    """A header as readable text: encoded words decoded, raw 8-bit read as UTF-8/1252."""
    if value is None:
        return ""
    text = str(value)
    if any("\udc80" <= ch <= "\udcff" for ch in text):  # raw 8-bit bytes (RFC 6532 or worse)
        text = decode_bytes(text.encode("utf-8", "surrogateescape"), None)
    if "=?" in text:
        try:
            words = decode_header(text)
            text = str(make_header([(w, _codec(cs) if cs else cs) for w, cs in words]))
        except (LookupError, UnicodeError, ValueError, AssertionError, MessageError):
            parts = []
            try:
                for chunk, cs in decode_header(text):
                    parts.append(decode_bytes(chunk, cs) if isinstance(chunk, bytes) else chunk)
                text = "".join(parts)
            except (LookupError, UnicodeError, ValueError, AssertionError, MessageError):
                pass
    return _WS.sub(" ", text.replace("\x00", "")).strip()


def _split_extension(name: str) -> tuple[str, str]:
    """`report.pdf` -> (`report`, `pdf`); ("name", "") when what follows the last dot is no
    plausible extension (`Minutes 12.11.2026 meeting`), so such a name is not cut short."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 16 or _WS.search(ext):
        return name, ""
    return stem, ext


def sanitise_filename(name: str | None, *, fallback: str, max_length: int = 120) -> str:
    """A name safe on any disk and honest on screen: no separators, control or direction
    characters or leading dots; capped."""
    text = unicodedata.normalize("NFC", _header_text(name) if name else "")
    text = PurePath(text.replace("\\", "/")).name if text else ""  # drop any directory part
    text = _CONTROL.sub("", _UNSAFE.sub("_", text))
    text = DIRECTION_CONTROLS.sub("", text).strip().lstrip(".").strip()
    if not text or set(text) <= {"_", " ", "."}:
        text = fallback
    stem, ext = _split_extension(text)
    if stem.split(".", 1)[0].strip().lower() in _WINDOWS_RESERVED:  # NUL.tar.gz is NUL too
        stem = f"_{stem}"
    room = max(1, max_length - (len(ext) + 1 if ext else 0))
    stem = stem[:room].rstrip(" .") or "attachment"
    return f"{stem}.{ext}" if ext else stem


class UniqueNames:
    """`name`, else `name (2)`, `name (3)`... never the same name twice (case-insensitively),
    each stem shortened so the name stays within `max_length`.

    Each name's count resumes where it stopped: counting from 2 every time made 5,000 parts
    called `image.png` take 8.9 s to name, and 20,000 over two minutes.
    """

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self.taken: set[str] = set()
        self.next: dict[str, int] = {}

    def __call__(self, name: str) -> str:
        key = name.lower()
        if key not in self.taken:
            self.taken.add(key)
            return name
        stem, ext = _split_extension(name)
        n = self.next.get(key, 2)
        while True:
            tail = f" ({n}).{ext}" if ext else f" ({n})"
            candidate = stem[: max(1, self.max_length - len(tail))].rstrip(" .") + tail
            n += 1
            if candidate.lower() not in self.taken:
                self.taken.add(candidate.lower())
                self.next[key] = n
                return candidate


class _HTML2Text(html2text.HTML2Text):
    """html2text that keeps table cells apart ("Mrs Hughes AB123", not "Mrs HughesAB123")."""

    def handle_tag(self, tag: str, attrs: dict[str, str | None], start: bool) -> None:
        super().handle_tag(tag, attrs, start)
        if tag in ("td", "th") and not start:
            self.o(" ")


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body (links kept, images and markup noise dropped).

    Markdown artefacts are undone: list-like line starts stay unescaped ("1." not "1\\.")
    and trailing spaces (hard-break markers, Outlook's &nbsp;-only paragraphs) go.
    """
    converter = _HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.ignore_tables = True
    converter.single_line_break = False
    converter.unicode_snob = True
    text = _TRAILING_SPACE.sub("", _MD_LIST_ESCAPE.sub(r"\1\2", converter.handle(html)))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return _utc(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


_HEADER = email.policy.default.header_factory
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\]\\,;:\"']+@[^\s<>()\[\]\\,;:\"']+\.[^\s<>()\[\]\\,;:\"']+")


def _unfolded(value: str) -> str:
    """A header's raw text on one line: raw 8-bit read as UTF-8/1252, encoded words kept."""
    text = str(value)
    if any("\udc80" <= ch <= "\udcff" for ch in text):  # raw 8-bit (RFC 6532 or worse)
        text = decode_bytes(text.encode("utf-8", "surrogateescape"), None)
    return _WS.sub(" ", text.replace("\x00", "")).strip()


def _mailboxes(values: list[str]) -> list[tuple[str, str]]:
    """(display name, lower-case addr-spec) of each mailbox, read as mail servers and DMARC
    read them: the RFC 5322 structure first, encoded words decoded only inside display names.
    Decoding first let `=?utf-8?q?priya.shah=40example.gov.uk?= <attacker@evil.example>`
    pass for Priya, and read an encoded "Müller, Bernd" as two broken addresses."""
    found: list[tuple[str, str]] = []
    for value in values:
        try:
            addresses = _HEADER("To", _unfolded(value)).addresses
        except Exception:  # noqa: BLE001 - the stdlib's parser on hostile input
            continue
        for address in addresses:
            if address.username and address.domain:
                name = _WS.sub(" ", address.display_name or "").strip()
                found.append((name, address.addr_spec.strip().lower()))
    return found


def _addresses(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(addr for _name, addr in _mailboxes(values)))


def _sender(values: list[str]) -> tuple[str | None, str | None, str | None]:
    """(name, address, problem): the one mailbox in From, or why there is no one sender.

    Ambiguous is anything two readers could take for two senders: several From headers or
    mailboxes, or an address shown anywhere in From (raw or in the decoded name) that is not
    the address the mail servers saw."""
    if len(values) > 1:
        return None, None, f"the message has {len(values)} From headers"
    mailboxes = _mailboxes(values)
    if not mailboxes:
        return None, None, None
    addresses = list(dict.fromkeys(addr for _name, addr in mailboxes))
    if len(addresses) > 1:
        shown = ", ".join(addresses[:5])
        return None, None, f"the From header names {len(addresses)} addresses: {shown}"
    name, address = mailboxes[0]
    for text in (_unfolded(values[0]), name):
        for shown in _ADDRESS_LIKE.findall(text):
            if shown.strip(".").lower() != address:
                problem = f"the From header shows {shown.strip('.')} but the address is {address}"
                return None, None, problem
    return _shown_name(values[0], address) or name or None, address, None


def _shown_name(value: str, address: str) -> str | None:
    """The name as mail clients show it, for display only (the address is settled by then):
    decoded whole, so encoded words split mid-word join up again and a name given as a
    comment (`MAILER-DAEMON@host (Mail Delivery System)`) is kept, as `parseaddr` reads it."""
    try:
        name, addr = parseaddr(_header_text(value))
    except (TypeError, ValueError, IndexError):
        return None
    return name.strip() or None if addr.strip().lower() == address else None


# --- the MIME walk -----------------------------------------------------------------------


MAX_PARTS = 500  # MIME parts read in one email; more is a message built to stall the pipeline
MAX_DEPTH = 40  # nesting levels


@dataclass
class _Walk:
    max_filename_length: int
    max_parts: int = MAX_PARTS
    max_depth: int = MAX_DEPTH
    parts: int = 0
    too_complex: str | None = None
    linesep: str = "\r\n"  # the source's line ending, for attached emails
    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    delivery_status: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.unique = UniqueNames(self.max_filename_length)

    def attach(
        self,
        part: Message,
        payload: bytes,
        ctype: str,
        name: str | None,
        fallback_stem: str,
        inline: bool,
    ) -> None:
        ext = ".eml" if ctype == "message/rfc822" else (mimetypes.guess_extension(ctype) or ".bin")
        fallback = f"{fallback_stem}-{len(self.attachments) + 1}{ext}"
        filename = sanitise_filename(name, fallback=fallback, max_length=self.max_filename_length)
        if ctype == "message/rfc822" and not filename.lower().endswith(".eml"):
            filename = sanitise_filename(
                f"{filename}.eml", fallback=fallback, max_length=self.max_filename_length
            )
        cid = normalise_message_id(part.get("Content-ID"))
        self.attachments.append(ParsedAttachment(
            filename=self.unique(filename),
            content_type=ctype, payload=payload,
            inline=inline, content_id=cid, held=held_back(filename, ctype, payload),
        ))  # fmt: skip
        if is_tnef(filename, ctype):
            self.unpack(payload)

    def unpack(self, tnef: bytes) -> None:
        """The files in an Outlook winmail.dat become attachments of their own (each judged
        by itself); the winmail.dat is kept too, and never sent on."""
        try:
            files = unpack_tnef(tnef)
        except TnefError as exc:
            self.defects.append(f"winmail.dat not unpacked: {exc}")
            return
        for name, payload in files:
            self.parts += 1
            fallback = f"winmail-file-{len(self.attachments) + 1}.bin"
            filename = sanitise_filename(
                name, fallback=fallback, max_length=self.max_filename_length
            )
            ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
            self.attachments.append(ParsedAttachment(
                filename=self.unique(filename), content_type=ctype, payload=payload,
                held=held_back(filename, ctype, payload),
            ))  # fmt: skip


def _message_bytes(message: Message, linesep: str) -> bytes:
    """An attached email as it was sent: headers not refolded, the source's line endings.

    `Message.as_bytes()` refolds headers longer than 78 characters (which breaks the
    attached email's DKIM signature) and writes "\\n" line endings.
    """
    out = io.BytesIO()
    policy = _VerbatimPolicy(linesep=linesep)
    BytesGenerator(out, mangle_from_=False, policy=policy).flatten(message)
    return out.getvalue()


def _truncated_base64(text: object) -> bytes:
    """Base64 cut off one character into a group of four, which the email package returns
    undecoded: the complete groups decoded (the stray character holds no whole byte)."""
    chars = re.sub(r"[^A-Za-z0-9+/]", "", text if isinstance(text, str) else "")
    return binascii.a2b_base64(chars[: len(chars) - len(chars) % 4])


# Base64 as the email package takes it without a defect: the alphabet, line breaks, and
# at most two "=" at the end.
_CLEAN_BASE64 = re.compile(r"[A-Za-z0-9+/\r\n]*(?:=[\r\n]*){0,2}")


def _payload_bytes(part: Message) -> bytes | None:
    """A part's decoded bytes. Clean base64 (nearly every attachment) is decoded in one
    step from the text: the email package holds it three times over on the way (as bytes,
    split into lines, joined again: +113 MB for a 40 MB attachment). Anything else, it
    decodes, recording its defects."""
    payload = part.get_payload()
    if (
        isinstance(payload, str)
        and str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64"
        and _CLEAN_BASE64.fullmatch(payload)
        and (len(payload) - payload.count("\r") - payload.count("\n")) % 4 == 0
    ):
        return binascii.a2b_base64(payload)
    return part.get_payload(decode=True)


def _filename(part: Message) -> str | None:
    """The part's file name; an RFC 2231 name (`filename*=gb2312''...`) is read in its
    charset as text is (decode_bytes), not by the email package's stricter lookup."""
    try:
        name = part.get_filename()
        for header, param in (("content-disposition", "filename"), ("content-type", "name")):
            value = part.get_param(param, None, header)
            if isinstance(value, tuple):  # RFC 2231: (charset, language, percent-decoded)
                charset, _lang, text = value
                name = decode_bytes(text.encode("latin-1", "replace"), charset or None)
                break
            if value is not None:
                break
    except (LookupError, UnicodeError, ValueError, TypeError, IndexError):
        name = None
    return _header_text(name) if name else None


_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")


def _fields(items: list[tuple[str, object]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in items:
        out.setdefault(str(name).strip().lower(), _header_text(value))
    return out


def _dsn_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status part, as RFC 3464 lays them out.

    The email package splits message/delivery-status into one header-only Message per
    block; message/global-delivery-status (RFC 6533) comes as one Message whose body holds
    the blocks after the first, so those are read from its text.
    """
    blocks: list[dict[str, str]] = []
    payload = part.get_payload()
    for block in payload if isinstance(payload, list) else []:
        if not isinstance(block, Message):
            continue
        block.policy = _RAW_8BIT
        blocks.append(_fields(list(block.items())))
        rest = block.get_payload()
        if isinstance(rest, str) and rest.strip():
            for chunk in _BLANK_LINE.split(rest.strip()):
                parsed = HeaderParser(policy=_RAW_8BIT).parsestr(chunk.strip() + "\n")
                blocks.append(_fields(list(parsed.items())))
    return [b for b in blocks if b]


def _walk(part: Message, walk: _Walk, depth: int = 0) -> None:
    if walk.too_complex:
        return
    walk.parts += 1
    if depth > walk.max_depth or walk.parts > walk.max_parts:
        walk.too_complex = (
            f"MIME nesting deeper than {walk.max_depth} levels"
            if depth > walk.max_depth
            else f"more than {walk.max_parts} MIME parts"
        )
        walk.defects.append(f"{walk.too_complex}: the rest was not read")
        return
    part.policy = _RAW_8BIT
    ctype = part.get_content_type()
    disposition = (part.get_content_disposition() or "").lower()
    name = _filename(part)
    if ctype in _DSN_TYPES:
        try:
            walk.delivery_status.extend(_dsn_blocks(part))
        except Exception as exc:  # noqa: BLE001 - a broken report must not lose the message
            walk.defects.append(f"delivery-status part unreadable: {type(exc).__name__}: {exc}")
    if ctype == "message/rfc822":
        inner = part.get_payload()
        inner_msg = inner[0] if isinstance(inner, list) and inner else None
        if isinstance(inner_msg, Message):
            inner_msg.policy = _RAW_8BIT
            try:
                data = _message_bytes(inner_msg, walk.linesep)
            except (LookupError, UnicodeError, ValueError, TypeError, KeyError):
                data = inner_msg.as_string().encode("utf-8", "surrogateescape")
            subject = _header_text(inner_msg.get("Subject")) or "attached-message"
            walk.attach(part, data, ctype, name or f"{subject}.eml", "message", inline=False)
        else:
            payload = part.get_payload(decode=True) or b""
            walk.attach(part, payload, ctype, name, "message", inline=False)
        return
    if part.is_multipart():
        for sub in part.get_payload():  # type: ignore[union-attr]
            if isinstance(sub, Message):
                _walk(sub, walk, depth + 1)
        return
    try:
        payload = _payload_bytes(part)
    except (ValueError, TypeError, AssertionError) as exc:
        walk.defects.append(f"undecodable part {ctype}: {exc}")
        payload = None
    if payload is not None and any(isinstance(d, InvalidBase64LengthDefect) for d in part.defects):
        payload = _truncated_base64(part.get_payload())
    if payload is None:
        raw = part.get_payload()
        payload = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
    is_body = ctype in ("text/plain", "text/html") or ctype.startswith("multipart/")
    if is_body and disposition != "attachment" and not name:
        # One line ending ("\n") whatever the transport and transfer encoding used.
        text = decode_bytes(payload, part.get_content_charset())
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        (walk.htmls if ctype == "text/html" else walk.texts).append(text)
        return
    inline = disposition == "inline" or (
        disposition != "attachment" and bool(part.get("Content-ID"))
    )
    walk.attach(part, payload, ctype, name, "attachment", inline=inline)


# --- parse -------------------------------------------------------------------------------


def _first_received(values: list[str]) -> datetime | None:
    if not values:
        return None
    top = _header_text(values[0])
    if ";" not in top:
        return None
    return _date(top.rsplit(";", 1)[1].strip())


def _return_path(value: str | None) -> str | None:
    """`<Bounces+x@Host>` -> `bounces+x@host`; `<>` -> "" (the null reverse-path)."""
    if value is None:
        return None
    match = re.search(r"<([^<>]*)>", value)
    path = (match.group(1) if match else value).strip()
    if not path:
        return "" if match else None
    path = path.rsplit(":", 1)[-1] if path.startswith("@") else path  # drop a source route
    return path.strip().lower()


FEED_BYTES = 1024 * 1024


class _TooManyParts(Exception):
    """The MIME tree grew past the parts limit while it was being read."""


def _tree(raw: bytes, max_parts: int) -> Message:
    """The email package's MIME tree of `raw`, given up on (_TooManyParts) as soon as it
    holds more than `max_parts` parts: a message built to stall is never read whole."""
    made = -1  # the parser makes one part at the start, to learn how to call the factory

    def part(policy: Compat32 = email.policy.compat32) -> Message:
        nonlocal made
        made += 1
        if made > max_parts:
            raise _TooManyParts
        return Message(policy=policy)

    parser = BytesFeedParser(_factory=part, policy=email.policy.compat32)
    # Fed a piece at a time: fed whole, the parser holds the message decoded to text and
    # split into lines all at once (a 40 MB email took 234 MB to read; in pieces, 76 MB).
    view = memoryview(raw)
    for start in range(0, len(raw), FEED_BYTES):
        parser.feed(bytes(view[start : start + FEED_BYTES]))
    return parser.close()


_HEADER_END = re.compile(rb"\r?\n\r?\n")


def header_of(raw: bytes) -> bytes:
    """The header section of a message (up to and including the blank line after it)."""
    end = _HEADER_END.search(raw)
    return raw[: end.end()] if end else raw


def parse_header(
    raw: bytes, *, too_large: str | None = None, too_complex: str | None = None
) -> ParsedEmail:
    """A message read by its header alone, for one mailbridge does not read whole: over
    the size limit (`raw` is then only its header) or past the parse time limit."""
    parsed = parse(header_of(raw))
    digest = hashlib.sha256(raw).hexdigest()
    why = too_large or too_complex
    return replace(
        parsed,
        raw_sha256=digest,
        dedupe_key=parsed.dedupe_key if parsed.message_id else f"sha256:{digest}",
        too_large=too_large,
        too_complex=too_complex,
        defects=(*parsed.defects, f"{why}: only the header was read") if why else parsed.defects,
    )


def _dedupe_key(message_id: str | None, content: str, raw_sha256: str) -> str:
    """`<Message-ID> content:<hex>`; a Message-ID too long for the key's 998 characters is
    named by its sha256 instead, so the key still fits its column."""
    if not message_id:
        return f"sha256:{raw_sha256}"
    if len(message_id) > 998 - len(" content:") - len(content):
        message_id = (
            "id-sha256:" + hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()
        )
    return f"{message_id} content:{content}"


def previous_key(key: str) -> str | None:
    """The key a message had before keys held its content: its bare Message-ID."""
    message_id, sep, _content = key.partition(" content:")
    return message_id if sep and not message_id.startswith("id-sha256:") else None


def content_sha256(
    sender: str | None,
    recipients: tuple[str, ...],
    subject: str,
    body_text: str,
    body_html: str | None,
    attachments: list[ParsedAttachment],
) -> str:
    """What a message says, hashed: two deliveries of one email agree (the headers a
    server adds in transit are not in it, nor the Date a relay adds where the sender gave
    none, and the bodies are read decoded, so a relay re-encoding 8-bit as
    quoted-printable changes nothing); another email that reuses its Message-ID does not."""
    said = [
        sender or "",
        list(recipients),
        _WS.sub(" ", subject).strip(),
        body_text,
        body_html or "",
        [(a.content_type, hashlib.sha256(a.payload).hexdigest()) for a in attachments],
    ]
    text = json.dumps(said, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def parse(
    raw: bytes,
    *,
    max_filename_length: int = 120,
    max_parts: int = MAX_PARTS,
    max_depth: int = MAX_DEPTH,
) -> ParsedEmail:
    """Everything routing and storage need from the raw bytes, with defects noted."""
    try:
        message = _tree(raw, max_parts)
    except _TooManyParts:
        return parse_header(raw, too_complex=f"more than {max_parts} MIME parts")
    except RecursionError:
        return parse_header(raw, too_complex="MIME nesting too deep to read")
    digest = hashlib.sha256(raw).hexdigest()
    defects: list[str] = []
    mail = None
    import mailparser  # here, not at the top: the parse workers import it, after the fork

    try:
        mail = mailparser.MailParser(message)
    except Exception as exc:  # noqa: BLE001 - mail-parser on hostile input: read the tree
        defects.append(f"mail-parser could not parse the message: {type(exc).__name__}: {exc}")
    if mail is not None:
        try:
            defects.extend(str(d) for d in (mail.defects_categories or []))
        except Exception as exc:  # noqa: BLE001
            defects.append(f"defects unreadable: {exc}")

    message.policy = _RAW_8BIT  # mail-parser parsed with compat32; _walk sets the parts'

    headers: dict[str, str] = {}
    for key, value in message.items():
        k = key.lower()
        if k not in headers:
            headers[k] = _header_text(value)

    def all_of(name: str) -> list[str]:
        return [str(v) for v in (message.get_all(name) or [])]

    from_name, from_address, sender_problem = _sender(all_of("From"))

    linesep = "\r\n" if b"\r\n" in raw else "\n"
    walk = _Walk(
        max_filename_length=max_filename_length,
        max_parts=max_parts,
        max_depth=max_depth,
        linesep=linesep,
    )
    try:
        _walk(message, walk)
    except Exception as exc:  # noqa: BLE001 - keep what was read so far
        walk.defects.append(f"MIME structure unreadable: {type(exc).__name__}: {exc}")
    defects.extend(walk.defects)
    body_html = "\n".join(walk.htmls) if walk.htmls else None
    body_text = "\n".join(t.strip("\n") for t in walk.texts).strip()
    if not body_text and body_html:
        try:
            body_text = html_to_text(body_html)
        except Exception as exc:  # noqa: BLE001 - html2text on hostile HTML
            defects.append(f"HTML body could not be converted: {exc}")

    message_id = normalise_message_id(headers.get("message-id"))
    refs = tuple(dict.fromkeys(_ID.findall(headers.get("references", ""))))
    subject = headers.get("subject", "")
    to, cc = _addresses(all_of("To")), _addresses(all_of("Cc"))
    content = content_sha256(from_address, to + cc, subject, body_text, body_html, walk.attachments)
    return ParsedEmail(
        raw_sha256=digest,
        dedupe_key=_dedupe_key(message_id, content, digest),
        content_sha256=content,
        message_id=message_id,
        from_address=from_address,
        from_name=from_name,
        to=to,
        cc=cc,
        reply_to=_addresses(all_of("Reply-To")),
        subject=subject,
        date=_date(headers.get("date")),
        received_at=_first_received(all_of("Received")),
        in_reply_to=normalise_message_id(headers.get("in-reply-to")),
        references=refs,
        body_text=body_text,
        body_html=body_html,
        attachments=tuple(walk.attachments),
        headers=headers,
        defects=tuple(defects),
        return_path=_return_path(headers.get("return-path")),
        delivery_status=tuple(walk.delivery_status),
        sender_problem=sender_problem,
        too_complex=walk.too_complex,
        header_fields=tuple((k.lower(), _WS.sub(" ", str(v)).strip()) for k, v in message.items()),
    )
