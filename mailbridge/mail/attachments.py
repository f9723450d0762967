"""Is an attachment safe to send on, and the files inside an Outlook `winmail.dat`.

`held_back` is the one rule: every email that carries a case's files to a member or an
officer asks it (through the verdict stored on each attachment), so a file that runs code
when opened (a program, a script, a shortcut, a disc image, an Office file with macros, a web
page with a form or script) stays on the case for the coordinators, who may check it and
send it on by hand. The name, the declared type and the bytes are each judged: a program
renamed `report.pdf` is still a program. Sniffing reads a fixed prefix (puremagic); only a
zip's directory, an OLE file's directory and an HTML file's text are read further, all
within the attachment size cap.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
from email import message_from_bytes

import olefile
import puremagic
from tnefparse import TNEF

SNIFF_BYTES = 64 * 1024  # covers ISO 9660's "CD001" at 0x8001

_SCRIPTS = ("bat", "cmd", "ps1", "psm1", "psd1", "vbs", "vbe", "js", "jse", "wsf", "wsh",
            "wsc", "hta", "sct", "msc", "reg", "jar", "inf", "scf", "application",
            "appref-ms")  # fmt: skip
# Run code when opened, by name alone (Windows decides by the extension).
_EXTENSIONS = {
    **dict.fromkeys(("exe", "dll", "scr", "com", "pif", "cpl", "sys", "drv"), "program"),
    **dict.fromkeys(("msi", "msp", "msix", "msixbundle", "appx", "appxbundle"), "installer"),
    **dict.fromkeys(_SCRIPTS, "script"),
    **dict.fromkeys(("lnk", "url", "website"), "shortcut"),
    **dict.fromkeys(("iso", "img", "vhd", "vhdx"), "disc image"),
    **dict.fromkeys(
        ("docm", "dotm", "xlsm", "xltm", "xlam", "xlsb", "pptm", "potm", "ppam", "ppsm", "sldm"),
        "Office file with macros",
    ),
}
_HTML_EXTENSIONS = {"htm", "html", "xhtml", "shtml", "mht", "mhtml", "svg"}

# Declared types that say "program" or "script" whatever the name.
_TYPES = {
    "application/x-msdownload": "program",
    "application/x-dosexec": "program",
    "application/vnd.microsoft.portable-executable": "program",
    "application/x-msi": "installer",
    "application/x-ms-installer": "installer",
    "application/javascript": "script",
    "text/javascript": "script",
    "application/x-javascript": "script",
    "text/vbscript": "script",
    "application/hta": "script",
    "application/x-ms-shortcut": "shortcut",
    "application/x-iso9660-image": "disc image",
}
_MACRO_TYPE = re.compile(r"application/vnd\.ms-[a-z]+\.[a-z.]*macroenabled", re.IGNORECASE)

_MSI_CLSIDS = {  # the root storage's class of an installer or a patch
    "000C1084-0000-0000-C000-000000000046",
    "000C1086-0000-0000-C000-000000000046",
}
_OLE_MACRO_STREAMS = ("macros", "_vba_project_cur", "vba")
_HTML_START = re.compile(
    rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body|form|script)\b",
    re.IGNORECASE | re.DOTALL,
)
_HTML_ACTIVE = (
    (re.compile(rb"<\s*form\b", re.IGNORECASE), "a form"),
    (re.compile(rb"<\s*script\b", re.IGNORECASE), "a script"),
    (re.compile(rb"[\s\"'/]on[a-z]+\s*=", re.IGNORECASE), "a script"),  # onload=, onerror=
    (re.compile(rb"javascript\s*:", re.IGNORECASE), "a script"),
    (re.compile(rb"<\s*(?:iframe|object|embed)\b", re.IGNORECASE), "embedded content"),
    (re.compile(rb"<\s*meta[^>]{0,500}http-equiv\s*=\s*[\"']?refresh", re.I), "a redirect"),
)


def extension(filename: str) -> str:
    """The last extension, lower case: what Windows opens the file with."""
    stem, dot, ext = filename.strip().rstrip(". ").rpartition(".")
    return ext.lower() if dot and stem else ""


def _shown(name: str) -> str:
    """A name from inside a file, fit to quote in a reason: printable, at most 80 characters."""
    return "".join(ch for ch in name if ch.isprintable())[:80]


def _sniffed(prefix: bytes) -> str | None:
    """What the first bytes say, for the types that run code: puremagic's signatures."""
    try:
        matches = puremagic.magic_string(prefix)
    except (puremagic.PureError, ValueError):
        return None
    for match in matches:
        found = (match.extension.lower(), match.name.lower())
        if found[0] in (".exe", ".dll") and prefix[:2] == b"MZ":
            return "program (MZ header)"
        if found[0] == ".elf" or prefix[:4] == b"\x7fELF":
            return "program (ELF header)"
        if found[0] == ".lnk":
            return "shortcut (Windows LNK header)"
        if found[0] == ".iso" and "iso-9660" in found[1]:
            return "disc image (ISO 9660)"
    return None


def _zip_verdict(payload: bytes) -> str | None:
    """An Office Open XML file with a VBA project, or a zip holding a program or script."""
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error):
        return None
    for name in names:
        base = name.rsplit("/", 1)[-1]
        if base.lower() == "vbaproject.bin":
            return f"Office file with macros ({name})"
        kind = _EXTENSIONS.get(extension(base))
        if kind and kind != "Office file with macros":
            return f"zip holding a {kind} ({_shown(base)})"
    return None


def _ole_verdict(payload: bytes) -> str | None:
    """An installer, or a Word/Excel 97-2003 file with macros (an OLE compound file)."""
    try:
        with olefile.OleFileIO(payload) as ole:
            if (ole.root.clsid or "").upper() in _MSI_CLSIDS:
                return "installer (MSI)"
            for entry in ole.listdir(streams=True, storages=True):
                if any(part.lower() in _OLE_MACRO_STREAMS for part in entry):
                    return f"Office file with macros ({'/'.join(entry)})"
    except Exception:  # noqa: BLE001 - olefile on hostile bytes: not an OLE file we can read
        return None
    return None


def _html_verdict(payload: bytes) -> str | None:
    for pattern, what in _HTML_ACTIVE:
        if pattern.search(payload):
            return f"web page with {what}"
    return None


MAX_EMAIL_PARTS = 500  # parts of an attached email looked at


def _email_verdict(payload: bytes) -> str | None:
    """An attached email carrying a file that is held back: the email is held back with it,
    or the file would reach the member inside it."""
    try:
        message = message_from_bytes(payload)
        for count, part in enumerate(message.walk()):
            if count >= MAX_EMAIL_PARTS:
                return f"attached email with more than {MAX_EMAIL_PARTS} parts to check"
            name = part.get_filename() or ""
            if part.is_multipart() or not (name or part.get_content_disposition() == "attachment"):
                continue
            data = part.get_payload(decode=True)
            data = data if isinstance(data, bytes) else b""
            verdict = held_back(name, part.get_content_type(), data)
            if verdict:
                return f"attached email holding {_shown(name) or 'a file'}: {verdict}"
    except Exception as exc:  # noqa: BLE001 - the stdlib on hostile bytes (deep nesting)
        return f"attached email that could not be checked ({type(exc).__name__})"
    return None


# A winmail.dat whose files were taken out: kept on the case, not sent on, and not named as
# held back either, since its files go on by themselves.
UNPACKED = "Outlook winmail.dat: the files in it are attachments of their own"


def is_tnef(filename: str, content_type: str) -> bool:
    return content_type.lower() in ("application/ms-tnef", "application/vnd.ms-tnef") or (
        filename.strip().lower() == "winmail.dat"
    )


def held_back(filename: str, content_type: str, payload: bytes) -> str | None:
    """Why this file must not be sent on to members or officers, or None when it may be.

    By name, by declared type and by content, the first reason found: "script (.js)",
    "program (MZ header)", "web page with a form"...
    """
    ext = extension(filename)
    ctype = content_type.lower()
    if ext in _EXTENSIONS:
        return f"{_EXTENSIONS[ext]} (.{ext})"
    if ctype in _TYPES:
        return f"{_TYPES[ctype]} (declared {ctype})"
    if _MACRO_TYPE.match(ctype):
        return f"Office file with macros (declared {ctype})"
    if ctype == "message/rfc822" or ext == "eml":
        return _email_verdict(payload)
    if is_tnef(filename, ctype):
        try:
            files = unpack_tnef(payload)
        except TnefError as exc:
            return f"Outlook winmail.dat that could not be unpacked ({exc})"
        if not files:
            return "Outlook winmail.dat holding no files"
        return UNPACKED
    prefix = payload[:SNIFF_BYTES]
    sniffed = _sniffed(prefix)
    if sniffed:
        return sniffed
    if prefix[:4] == b"PK\x03\x04":
        verdict = _zip_verdict(payload)
        if verdict:
            return verdict
    if prefix[:8] == olefile.MAGIC:
        verdict = _ole_verdict(payload)
        if verdict:
            return verdict
    if ext in _HTML_EXTENSIONS or ctype in ("text/html", "application/xhtml+xml", "image/svg+xml") \
            or _HTML_START.match(prefix[:1024].lstrip(b"\xef\xbb\xbf")):  # fmt: skip
        return _html_verdict(payload)
    return None


# --- winmail.dat ---------------------------------------------------------------------------

MAX_TNEF_FILES = 100  # files taken out of one winmail.dat
MAX_TNEF_OBJECTS = 2_000  # TNEF attributes read: tnefparse copies the rest of the file per one
MAX_TNEF_COPY = 10_000_000_000  # objects x size: what tnefparse copies, ~0.5 s here at most

_TNEF_SIGNATURE = 0x223E9F78
_MAPI_LISTS = (0x9003, 0x9005)  # attMAPIProps, attAttachment: lists of MAPI properties
_RECIPIENTS = 0x9004
_FIXED = {0x0002: 2, 0x000B: 2, 0x0003: 4, 0x0004: 4, 0x000A: 4, 0x0005: 8, 0x0006: 8,
          0x0007: 8, 0x0014: 8, 0x0040: 8, 0x0048: 16, 0x0001: 0}  # fmt: skip
_VARIABLE = {0x0000, 0x000D, 0x001E, 0x001F, 0x0102}


class TnefError(ValueError):
    """A winmail.dat that is not TNEF, is damaged, or is too big to unpack safely."""


def _u16(data: bytes, offset: int) -> int:
    return struct.unpack_from("<H", data, offset)[0]


def _u32(data: bytes, offset: int) -> int:
    return struct.unpack_from("<I", data, offset)[0]


def _mapi_end(data: bytes, offset: int) -> int:
    """Where a MAPI property list ends; TnefError if any count promises more than is there.

    tnefparse trusts these counts: 0xFFFFFFFF properties past the end of the data loop four
    billion times, and as many two-byte values of a multi-valued property fill the memory.
    """
    size = len(data)
    count = _u32(data, offset)
    offset += 4
    if count > (size - offset) // 4:
        raise TnefError("a property count larger than the file")
    for _ in range(count):
        kind, name = _u16(data, offset), _u16(data, offset + 2)
        offset += 4
        if name >= 0x8000:  # a named property: its GUID, then an id or a name
            offset += 16
            named = _u32(data, offset)
            offset += 4
            if named == 0:
                offset += 4
            else:
                length = _u32(data, offset)
                offset += 4 + length + (-length % 4)
        multi = bool(kind & 0x1000)
        kind &= ~0x1000
        values = 1
        if multi:
            values = _u32(data, offset)
            offset += 4
            if values > (size - offset) // 2:
                raise TnefError("a value count larger than the file")
        if kind in _FIXED:
            width = _FIXED[kind]
            offset += width * values
            if width == 2 and values % 2:
                offset += 2
        elif kind in _VARIABLE:
            for _ in range(values):
                items = 1 if multi else _u32(data, offset)
                offset += 0 if multi else 4
                if items > (size - offset) // 4:
                    raise TnefError("a value count larger than the file")
                for _ in range(items):
                    length = _u32(data, offset)
                    offset += 4 + length + (-length % 4)
                    if offset > size:
                        raise TnefError("a property longer than the file")
        else:
            raise TnefError(f"unknown MAPI type {kind:#06x}")
        if offset > size:
            raise TnefError("a property longer than the file")
    return offset


def _check_tnef(data: bytes) -> None:
    """Walk the TNEF attributes as tnefparse will, within the bounds, before it does."""
    if len(data) < 6 or _u32(data, 0) != _TNEF_SIGNATURE:
        raise TnefError("not a TNEF file")
    offset, objects = 6, 0
    while offset + 12 < len(data):
        objects += 1
        if objects > MAX_TNEF_OBJECTS or objects * len(data) > MAX_TNEF_COPY:
            raise TnefError(f"more than {min(objects - 1, MAX_TNEF_OBJECTS)} TNEF attributes")
        name, length = _u16(data, offset + 1), _u32(data, offset + 5)
        body = data[offset + 9 : offset + 9 + length]
        if name in _MAPI_LISTS:
            _mapi_end(body, 0)
        elif name == _RECIPIENTS:
            rows, at = _u32(body, 0), 4
            if rows > len(body) // 4:
                raise TnefError("a recipient count larger than the file")
            for _ in range(rows):
                at = _mapi_end(body, at)
        offset += 9 + length + 2


def unpack_tnef(payload: bytes) -> list[tuple[str, bytes]]:
    """The files in a winmail.dat (name as Outlook gave it, bytes), at most MAX_TNEF_FILES.

    An embedded Outlook item (a message attached to the message) is left inside the
    winmail.dat, which is kept whole on the case."""
    try:
        _check_tnef(payload)
        tnef = TNEF(payload, do_checksum=False)
    except TnefError:
        raise
    except Exception as exc:
        raise TnefError(f"damaged: {type(exc).__name__}") from exc
    files: list[tuple[str, bytes]] = []
    for attachment in tnef.attachments:
        if hasattr(attachment, "embed") or not attachment.data:
            continue
        if len(files) == MAX_TNEF_FILES:
            raise TnefError(f"more than {MAX_TNEF_FILES} files")
        try:
            name = attachment.long_filename() or attachment.name
        except (UnicodeError, AttributeError, TypeError):
            name = ""
        files.append((name if isinstance(name, str) else "", bytes(attachment.data)))
    return files
