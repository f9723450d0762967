"""A winmail.dat written as Outlook writes one (MS-OXTNEF): the TNEF version, code page and
message class, the message's MAPI properties, then per file its rendering data, title, bytes
and MAPI properties with the long file name. Used to build the fixtures, and for hostile
shapes no fixture should carry whole."""

from __future__ import annotations

import struct

SIGNATURE = 0x223E9F78
MESSAGE, ATTACHMENT = 0x01, 0x02


def attribute(level: int, ident: int, data: bytes) -> bytes:
    """One TNEF attribute: level, id (name and type), length, data, checksum."""
    return (
        struct.pack("<BII", level, ident, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)
    )


def _string8(prop: int, text: str) -> bytes:
    value = text.encode("cp1252") + b"\0"
    return struct.pack("<HHII", 0x001E, prop, 1, len(value)) + value + b"\0" * (-len(value) % 4)


def _long(prop: int, value: int) -> bytes:
    return struct.pack("<HHI", 0x0003, prop, value)


def mapi(*props: bytes) -> bytes:
    return struct.pack("<I", len(props)) + b"".join(props)


def winmail(files: list[tuple[str, bytes]], *, key: int = 0x4C1E) -> bytes:
    out = struct.pack("<IH", SIGNATURE, key)
    out += attribute(MESSAGE, 0x00089006, struct.pack("<I", 0x00010000))  # attTnefVersion
    out += attribute(MESSAGE, 0x00069007, struct.pack("<II", 1252, 0))  # attOemCodepage
    out += attribute(MESSAGE, 0x00078008, b"IPM.Microsoft Mail.Note\0")  # attMessageClass
    out += attribute(MESSAGE, 0x00069003, mapi(_long(0x3FDE, 1252)))  # PR_INTERNET_CPID
    for name, data in files:
        stem, _, ext = name.rpartition(".")
        short = f"{stem[:6].upper().replace(' ', '')}~1.{ext[:3].upper()}"
        render = struct.pack("<HIHHI", 1, 0xFFFFFFFF, 0xFFFF, 0xFFFF, 0)
        out += attribute(ATTACHMENT, 0x00069002, render)  # attAttachRendData
        when = struct.pack("<7H", 2026, 11, 27, 10, 2, 11, 5)
        out += attribute(ATTACHMENT, 0x00038013, when)  # attAttachModifyDate
        out += attribute(ATTACHMENT, 0x00018010, short.encode("cp1252") + b"\0")  # attAttachTitle
        out += attribute(ATTACHMENT, 0x0006800F, data)  # attAttachData
        props = mapi(
            _long(0x3705, 1),  # PR_ATTACH_METHOD: by value
            _string8(0x3703, f".{ext}"),  # PR_ATTACH_EXTENSION
            _string8(0x3707, name),  # PR_ATTACH_LONG_FILENAME
        )
        out += attribute(ATTACHMENT, 0x00069005, props)  # attAttachment
    return out
