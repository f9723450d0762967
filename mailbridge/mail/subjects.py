"""Subject lines and case references: pure functions, no I/O.

`normalise` removes what mail clients and mail gateways put in front of a subject: reply and
forward prefixes in the languages our councillors' and officers' clients use, and the
"external sender" banners gateways add. Only a *leading chain* of these is removed; a prefix
in the middle of a subject ("Pothole - re: Mill Lane") is part of the subject. Our own case
tag (`[MQ-2026-00042]`) is never removed: when it sits inside the chain it is kept, in order,
in front of what remains.

Prefixes removed (case-insensitive, an optional counter `[2]` or `(3)`, optional space before
the colon, ASCII or full-width colon):

=========  ==========================================================================
re         English and most clients, also French "RE :" and Spanish/Portuguese "RE:"
fw, fwd    English forward (Outlook, Gmail)
aw, wg     German Outlook: Antwort / Weitergeleitet
antw       Dutch Outlook reply (with `doorst`, its forward)
sv, vb     Swedish/Norwegian/Danish reply (svar), Swedish forward (vidarebefordrat)
vs         Finnish reply (vastaus), Danish/Norwegian forward (videresend)
tr         French Outlook forward (transféré)
r, rif     Italian reply (risposta, riferimento)
res, enc   Portuguese (Brazil) Outlook: resposta, encaminhado
rv         Spanish Outlook forward (reenviado)
=========  ==========================================================================

External-sender banners removed, only these well-known spellings (any case): `[EXTERNAL]`,
`[EXT]`, `[EXTERNAL EMAIL]` (also `E-MAIL`, `MAIL`, `SENDER`, `MESSAGE`), `(EXTERNAL)`,
`*EXTERNAL*`, `**EXTERNAL**`, `EXTERNAL:` and `EXT:`. Anything else in brackets (`[Highways]`,
a list name) ends the chain and stays.

References are `<PREFIX>-<YYYY>-<NNNNN>`: a configured prefix of 1-8 letters, a four-digit
year and a sequence of five or more digits (zero-padded to five; it keeps counting past
99999). `find_references` accepts them with or without brackets, in any case, and with a
typographic hyphen or en dash (U+2010, U+2011, U+2013: what word processors and phone
keyboards substitute) in place of the ASCII hyphen. It does not accept spaces or a missing
separator (`MQ 2026 00042`, `MQ202600042`): those spellings also fit phone numbers and
product codes, and a reply that lost the tag still threads by In-Reply-To/References, the
signed reply address or the `Ref:` line in the quoted text (`find_body_marker`).
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["find_body_marker", "find_references", "normalise", "tag", "without_tags"]

_WS = re.compile(r"\s+")

# ASCII hyphen-minus and the dashes word processors and phone keyboards put in its place.
_DASH = "\\-\u2010\u2011\u2013"  # for use inside [...]

_PREFIXES = "re|aw|antw|doorst|sv|vb|vs|wg|fwd|fw|tr|rif|res|enc|rv|r"
_BANNER_WORDS = r"(?:external|ext)(?:[ \t]+(?:email|e-mail|mail|sender|message))?"
# A tag of ours (any configured prefix), as `tag` writes it: kept wherever it is.
_TAG_RE = r"\[[ \t]*[A-Za-z]{1,8}-[0-9]{4}-[0-9]{5,}[ \t]*\]"
_TAG = re.compile(_TAG_RE)

_CHAIN_TOKEN = re.compile(
    rf"""\s*(?:
        (?P<prefix>(?:{_PREFIXES})\s*(?:\[\s*[0-9]{{1,3}}\s*\]|\(\s*[0-9]{{1,3}}\s*\))?\s*[:\uff1a])
      | (?P<banner>
            \[\s*{_BANNER_WORDS}\s*\]\s*[:\uff1a]?
          | \(\s*external\s*\)\s*[:\uff1a]?
          | \*{{1,2}}\s*{_BANNER_WORDS}\s*\*{{1,2}}\s*[:\uff1a]?
          | {_BANNER_WORDS}\s*[:\uff1a]
        )
      | (?P<tag>{_TAG_RE})
    )\s*""",
    re.IGNORECASE | re.VERBOSE,
)


def normalise(subject: str) -> str:
    """The subject without its leading chain of reply/forward prefixes and external banners.

    `RE: [EXTERNAL] RE: [MQ-2026-00042] Pothole` -> `[MQ-2026-00042] Pothole`. Whitespace
    runs (folding, tabs, non-breaking spaces) become one space; CR/LF cannot survive.
    """
    text = _WS.sub(" ", subject or "").strip()
    kept: list[str] = []
    pos = 0
    while pos < len(text):
        match = _CHAIN_TOKEN.match(text, pos)
        if not match or match.end() == pos:
            break
        if match["tag"]:
            kept.append(match["tag"].strip())
        pos = match.end()
    return " ".join([*kept, text[pos:]]).strip()


def without_tags(subject: str) -> str:
    """The normalised subject with every `[XX-YYYY-NNNNN]` tag removed (for comparisons such
    as "is this subject just `status`?")."""
    return _WS.sub(" ", _TAG.sub(" ", normalise(subject))).strip()


@lru_cache(maxsize=32)
def _reference_pattern(prefix: str) -> re.Pattern[str]:
    if not re.fullmatch(r"[A-Za-z]{1,8}", prefix or ""):
        raise ValueError(f"a reference prefix is 1 to 8 letters, not {prefix!r}")
    sep = f"[{_DASH}]"
    return re.compile(
        # Not inside a longer token: no letter, digit, underscore or joining dash either side.
        rf"(?<![\w{_DASH}]){re.escape(prefix)}{sep}([0-9]{{4}}){sep}([0-9]{{5,}})"
        rf"(?!\w|[{_DASH}]\w)",
        re.IGNORECASE,
    )


def _canonical(prefix: str, match: re.Match[str]) -> str:
    # The digits as written: `MQ-2026-000421` is not read as case 421 (it may as well be a
    # mistyped 00042), so it finds no case and threading falls back to the headers.
    return f"{prefix.upper()}-{match[1]}-{match[2]}"


def find_references(subject: str, prefix: str = "MQ") -> list[str]:
    """Every case reference in the subject, as `MQ-2026-00042`, in order, without repeats.

    `(mq-2026-00042)`, `MQ-2026-00042` and `[MQ–2026–00042]` all count; `XMQ-2026-00042`,
    `MQ-2026-00042X`, `MQ-26-00042`, `MQ-2026-0042` and `MQ 2026 00042` do not.
    Raises ValueError for a prefix that is not 1-8 letters.
    """
    pattern = _reference_pattern(prefix)
    found = [_canonical(prefix, m) for m in pattern.finditer(subject or "")]
    return list(dict.fromkeys(found))


@lru_cache(maxsize=32)
def _marker_pattern(prefix: str) -> re.Pattern[str]:
    reference = _reference_pattern(prefix).pattern
    # A line that is only `Ref: MQ-2026-00042`, after any `>` quote markers and spaces.
    return re.compile(
        rf"^(?:[^\S\n]*>)*[^\S\n]*ref[^\S\n]*:[^\S\n]*{reference}[^\S\n]*$",
        re.IGNORECASE | re.MULTILINE,
    )


def find_body_marker(text: str, prefix: str = "MQ") -> str | None:
    """The reference on the first `Ref: MQ-2026-00042` line in a body, or None.

    Our outgoing mail ends with that line, so a reply carries it in its quoted text, under
    any `>` quote markers. The FIRST one is returned: quoting puts the message being answered
    nearest the top (top-posting and bottom-posting alike) and the older history it quotes
    below it, so the first marker names the case of the message the sender replied to.
    """
    match = _marker_pattern(prefix).search(text or "")
    return _canonical(prefix, match) if match else None


_BRACKETED = re.compile(r"\[[ \t]*([^\[\]\s]+)[ \t]*\]")


def tag(subject: str, reference: str) -> str:
    """Our outgoing subject: `[MQ-2026-00042] <normalised subject>`.

    Any `[MQ-2026-00042]` tag already in the subject (any case, anywhere) is dropped first,
    so the tag is never doubled; other cases' tags and the bare reference in running text
    stay. An empty subject gives just the tag.
    """
    ref = reference.strip()
    key = ref.casefold()
    # One pattern for every reference (a pattern per reference would be compiled per email).
    rest = _BRACKETED.sub(
        lambda m: " " if m.group(1).casefold() == key else m.group(0), normalise(subject)
    )
    rest = _WS.sub(" ", rest).strip()
    return f"[{ref}] {rest}" if rest else f"[{ref}]"
