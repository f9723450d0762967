"""Replies: the new text of an email, the keywords staff write in it, status requests. Pure.

How the new text is found (`extract_reply`)
-------------------------------------------
Line ends become "\n" and every line is stripped of surrounding white space, as
mail-parser-reply does (indentation does not survive). Then:

1. The body is cut at the first quoted-history header mail-parser-reply knows, in the
   languages asked for (its `EmailMessage.HEADER_REGEX`): Outlook's `From: / Sent: / To: /
   Subject:` block (also `Von: / Gesendet:`, `De : / Envoyé :`, `Van: / Verzonden:`...),
   `-----Original Message-----`, and `On <date>, <name> wrote:` from Gmail, Apple Mail and
   Thunderbird (also wrapped over two lines, also inside `>` quotes), `Am ... schrieb ...:`,
   `Le ... a écrit :`, `El ... escribió:`... Everything from that header on is history.
   The search runs on a probe, the first 500 lines cut to 200 characters: the library's
   attribution pattern takes time quadratic in the length of a line starting `On ` (one such
   line of 60,000 characters: minutes). A header line is recognised by its start, so the cut
   loses nothing; a reply whose new text is longer than 500 lines keeps its history.
   (The library's own `read()`/`latest_reply` is not used: `latest_reply` keeps the
   signature, and `read()` has no such guard.)
2. The library's disclaimer patterns (its `DISCLAIMERS_REGEX`) are removed: the banners mail
   gateways put at the top of external mail (`CAUTION: This email originated from outside
   ...`) and `Disclaimer: ...` / `Warning: ... email` paragraphs.
3. The signature is cut, by a stricter rule than the library's. Its rule cuts at any line
   that merely *starts* with a sign-off word (`Thanks, the contractor is booked for...` in
   the middle of an answer loses everything after it; Danish `Tak` also matches `Take`) and,
   by default, at any `- item` list line. Here a signature starts at
   - the first `--` delimiter line, `Sent from my ...` or `Get Outlook for ...` line, or
   - the LAST line that is only a sign-off (`Kind regards`, `Many thanks,`, `Thanks, Priya`,
     `Mit freundlichen Grüßen`: the library's phrase lists for the languages plus common
     British ones), optionally followed by up to three capitalised words (a name),
   whichever comes first, and never at the first line (`Thanks!` alone is a reply). The last
   sign-off rather than the first, so a `Thanks` inside a resident's letter the officer
   quotes, or before a P.S., does not cut the answer short. An officer who signs with a bare
   name block and no sign-off line keeps it: nothing is guessed away.
4. A council disclaimer the sign-off rule did not already remove (no sign-off line) is cut
   from its first line to the end: a line, not the first, that opens like `This email and
   any attachments are confidential...`, `If you are not the intended recipient...`, `The
   information in this email is confidential...`, `Please consider the environment before
   printing...`, `Emails sent to and from ... may be monitored`, or a heading `Disclaimer` /
   `Confidentiality notice`. These are disclaimers by their opening words, addressed to a
   wrong recipient, never part of what the member needs to read.
5. Trailing leftovers go: `>`-quoted lines, the attribution line just above them when the
   library did not know it (it contains an address or a year and ends with `:`, e.g. Gmail
   in Dutch `Op di 24 nov 2026 om 09:16 schreef Name <address>:`), rule lines (`* * *` is an
   HTML <hr>), forward separators (`---------- Forwarded message ---------`, `Begin
   forwarded message:`) with the header lines under them, and blank lines. Inline answers
   between quoted lines stay. Runs of blank lines become one.

If that leaves nothing, the new fragment as written (signature and all) is returned; if
there is no new fragment (the body is empty or starts with quoted history) or the library
raises, the whole text, stripped. A reply is never silently emptied, which also means an
accidental reply with no new text at all comes back as its quoted history.

Languages: `DEFAULT_LANGUAGES` are those whose header patterns ordinary English text does
not set off. Polish is left out on purpose: its Outlook header needs only ONE line starting
`Do:`, `Data:` or `Temat:` to cut the rest of the message. English is always included.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from mailparser_reply import EmailMessage
from mailparser_reply.constants import MAIL_LANGUAGES

from mailbridge.deadlines.policy import EXTEND_MOST_DAYS
from mailbridge.mail.subjects import without_tags

__all__ = [
    "DEFAULT_LANGUAGES",
    "SUPPORTED_LANGUAGES",
    "Keywords",
    "extract_reply",
    "find_keywords",
    "is_status_request",
    "strip_keywords",
]

SUPPORTED_LANGUAGES: tuple[str, ...] = tuple(sorted(MAIL_LANGUAGES))
DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "it", "nl", "sv", "da")

# British sign-offs the library's English list lacks (it has "Kind Regards", "Thanks,"...).
_EN_SIGN_OFFS = (
    r"kind(?:est)? regards", r"best regards", r"warm(?:est)? regards", r"regards",
    r"many thanks(?: and (?:kind |best )?regards)?", r"thanks(?: again| and regards)?",
    r"thank you(?: again)?", r"with (?:many )?thanks", r"(?:with )?best wishes",
    r"all the best", r"best", r"yours sincerely", r"yours faithfully", r"cheers",
)  # fmt: skip
_EN_SENT_FROM = (r"Sent from Outlook", r"Sent from Mail for Windows", r"Sent from Yahoo Mail")

# How much of a body mail-parser-reply's patterns see (see _new_fragment).
_PROBE_LINES = 500
_PROBE_WIDTH = 200
_DISCLAIMER_PROBE_CHARS = 100_000
_SIGN_OFF_MAX = 80  # a sign-off line is short: longer lines are not tried

_DELIMITER = re.compile(r"^(?:--|__)$")
# Left at the end once the history is cut: blank and quoted lines, rules (`* * *` is an
# HTML <hr>), and forward separators (`---------- Forwarded message ---------`, in any
# language, or Apple Mail's `Begin forwarded message:`).
_FORWARD_SEPARATOR = re.compile(r"^(?:-{3,}[^-]{0,40}-{3,}|begin forwarded message:)$", re.I)
_HEADER_LINE = re.compile(r"^[*]*[^\W\d_][\w-]{0,20}[*]*\s?:.*$")
_TRAILING_JUNK = re.compile(
    r"^(?:>.*|[*_=~\-\s]{3,}|-{3,}[^-]{0,40}-{3,}|begin forwarded message:|\s*)$",
    re.IGNORECASE,
)
# The end of an attribution line wrapped by the client: "wrote:" or "<address>:" alone.
_WRAPPED_TAIL = re.compile(r"^(?:[\w()]+|<?[^\s<>@]+@[^\s<>@]+>?\)?):$")
_ATTRIBUTION = re.compile(r"@|\b(?:19|20)[0-9]{2}\b")
_BLANK_RUNS = re.compile(r"\n[^\S\n]*\n(?:[^\S\n]*\n)+")
_NAME_PUNCT = " \t,.!:;-\u2013\u2014"

_DISCLAIMER = re.compile(
    r"""^[*\s]*(?:
        this\s+(?:e-?mail|message|communication)\b[^.]{0,100}?
            \b(?:(?:is|are)\s+(?:strictly\s+)?(?:confidential|private|privileged)
               |intended\s+(?:solely|only)\s+for
               |may\s+(?:contain|be)\s+(?:confidential|privileged|legally|protected))
      | (?:the\s+|any\s+)?information\s+(?:contained\s+)?in\s+this\s+(?:e-?mail|message)\b
            [^.]{0,100}?\b(?:confidential|privileged|intended|disclosed|subject\s+to)
      | if\s+you\s+(?:are\s+not\s+the\s+intended\s+recipient
               |have\s+received\s+this\s+(?:e-?mail|message|communication)\s+in\s+error)
      | please\s+consider\s+the\s+environment\s+before\s+printing
      | (?:please\s+note\s+(?:that\s+)?)?(?:e-?mails?|communications)\s+(?:sent\s+)?
            to\s+(?:and|or)\s+from\b[^.]{0,100}?\bmonitor
      | (?:e-?mail\s+)?disclaimer\s*:?\s*$
      | confidentiality\s+(?:notice|statement|note|warning)\b
    )""",
    re.IGNORECASE | re.VERBOSE,
)

_FLAG = re.compile(r"^#(holding|internal|member)[.!]?$", re.IGNORECASE)
_EXTEND = re.compile(r"^#extend(?=$|[\s:])(.*)$", re.IGNORECASE)
_EXTEND_ARGS = re.compile(
    r"^[\s:]*([0-9]{1,3})(?:\s*(?:working\s+)?days?\b)?(?:\s*[-\u2013\u2014:,;]\s*|\s+|$)(.*)$",
    re.IGNORECASE,
)
_QUOTE_MARKS = re.compile(r"^(?:\s*>)+")
_STATUS = re.compile(r"^status\s*[?!.:]*$", re.IGNORECASE)
_WS = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class _Rules:
    languages: tuple[str, ...]
    headers: re.Pattern[str]  # mail-parser-reply's quoted-history headers
    disclaimers: re.Pattern[str]  # mail-parser-reply's disclaimers and gateway banners
    sign_off: re.Pattern[str]  # any of sign_offs: a quick first test
    sign_offs: tuple[re.Pattern[str], ...]
    sent_from: re.Pattern[str]


@lru_cache(maxsize=16)
def _rules(languages: tuple[str, ...]) -> _Rules:
    wanted = [lang.strip().lower() for lang in languages]
    unknown = [lang for lang in wanted if lang not in MAIL_LANGUAGES]
    if unknown:
        raise ValueError(f"unsupported reply languages {unknown}; known: {SUPPORTED_LANGUAGES}")
    langs = tuple(dict.fromkeys(["en", *wanted]))
    library = EmailMessage(text="", languages=list(langs))  # for its compiled patterns
    phrases: list[str] = list(_EN_SIGN_OFFS)
    sent: list[str] = list(_EN_SENT_FROM)
    for lang in langs:
        table = MAIL_LANGUAGES[lang]
        phrases.extend(p.rstrip(",") for p in table.get("signatures", []) if p)
        if table.get("sent_from"):
            sent.append(table["sent_from"])
    return _Rules(
        languages=langs,
        headers=library.HEADER_REGEX,
        disclaimers=library.DISCLAIMERS_REGEX,
        sign_off=re.compile(rf"^(?:{'|'.join(phrases)})", re.IGNORECASE),
        sign_offs=tuple(re.compile(rf"^(?:{p})", re.IGNORECASE) for p in dict.fromkeys(phrases)),
        sent_from=re.compile(rf"^(?:{'|'.join(sent)})\b.{{0,60}}$", re.IGNORECASE),
    )


def _lines_of(text: str | None) -> str:
    return (text or "").replace("\r\n", "\n").replace("\r", "\n")


def _new_fragment(text: str, rules: _Rules) -> tuple[list[str], list[str]]:
    """The lines before the first quoted-history header (stripped, as mail-parser-reply
    normalises them) and the disclaimers the library finds in them.

    The library's patterns take time quadratic in the length of a line that starts like an
    attribution (`On ` + 50,000 characters: minutes), so they search a probe: the first
    `_PROBE_LINES` lines cut to `_PROBE_WIDTH` characters (a header line is found by its
    start). A reply whose new text is longer than the probe keeps its history: nothing lost.
    """
    lines = [line.strip() for line in text.split("\n")]
    probe = "\n".join(line[:_PROBE_WIDTH] for line in lines[:_PROBE_LINES])
    match = rules.headers.search(probe)
    if match:
        start = match.start() + (1 if probe[match.start() : match.start() + 1] == "\n" else 0)
        lines = lines[: probe.count("\n", 0, start)]
    head: list[str] = []
    size = 0
    for line in lines[:_PROBE_LINES]:
        size += len(line) + 1
        if size > _DISCLAIMER_PROBE_CHARS:
            break
        head.append(line)
    disclaimers = [d.strip() for d in rules.disclaimers.findall("\n".join(head))]
    return lines, [d for d in disclaimers if d]


def _is_sign_off(line: str, rules: _Rules) -> bool:
    if len(line) > _SIGN_OFF_MAX or not rules.sign_off.match(line):
        return False
    for pattern in rules.sign_offs:
        match = pattern.match(line)
        if not match:
            continue
        rest = line[match.end() :].strip(_NAME_PUNCT)
        words = rest.split()
        if len(words) <= 3 and all(w[0].isupper() for w in words):
            return True
    return False


def _signature_start(lines: list[str], rules: _Rules) -> int:
    content = [i for i, line in enumerate(lines) if line.strip()]
    if not content:
        return len(lines)
    cut = len(lines)
    for i in content[1:]:
        line = lines[i].strip()
        if _DELIMITER.match(line) or rules.sent_from.match(line):
            cut = i
            break
    for i in reversed(content[1:]):
        if i < cut and not lines[i].lstrip().startswith(">") and _is_sign_off(lines[i], rules):
            return i
    return cut


def _disclaimer_start(lines: list[str]) -> int:
    content = [i for i, line in enumerate(lines) if line.strip()]
    for i in content[1:]:
        if _DISCLAIMER.match(lines[i]):
            return i
    return len(lines)


def _drop_trailing_junk(lines: list[str]) -> list[str]:
    end = len(lines)
    while True:
        quoted = False
        while end and _TRAILING_JUNK.match(lines[end - 1]):
            quoted = quoted or lines[end - 1].startswith(">")
            end -= 1
        cut = _leftover_header(lines, end, quoted)
        if cut == end:
            return lines[:end]
        end = cut


def _leftover_header(lines: list[str], end: int, quoted: bool) -> int:
    """Where a history header the library did not take starts, at the end of lines[:end]."""
    # A forward separator followed only by header lines the library did not take, because
    # the client mixed languages (Gmail in German: "Von:" then "Date:", "Subject:").
    tail = end
    while tail and _HEADER_LINE.match(lines[tail - 1]):
        tail -= 1
    block = lines[tail:end]
    if any("@" in line for line in block) and tail and _FORWARD_SEPARATOR.match(lines[tail - 1]):
        return tail - 1
    if quoted and end and lines[end - 1].endswith(":"):
        # An attribution line the library does not know (Gmail in Dutch: "Op di 24 nov 2026
        # om 09:16 schreef Name <address>:"), maybe wrapped before "wrote:" or the address.
        last = lines[end - 1]
        if _WRAPPED_TAIL.match(last) and end > 1 and lines[end - 2]:
            if _ATTRIBUTION.search(f"{lines[end - 2]} {last}"):
                return end - 2
        elif _ATTRIBUTION.search(last):
            return end - 1
    return end


def _tidy(text: str) -> str:
    return _BLANK_RUNS.sub("\n\n", text).strip()


def extract_reply(text: str, *, languages: Iterable[str] = DEFAULT_LANGUAGES) -> str:
    """The new text of a reply: quoted history, signature and disclaimers removed.

    See the module docstring for the rules and the fallbacks. Raises ValueError only for a
    language code mail-parser-reply does not know (see SUPPORTED_LANGUAGES).
    """
    rules = _rules(tuple(languages))
    source = _lines_of(text)
    try:
        lines, disclaimers = _new_fragment(source, rules)
    except Exception:  # noqa: BLE001 - third-party patterns on untrusted text: keep it all
        return source.strip()
    fragment = _tidy("\n".join(lines))
    if not fragment:
        return source.strip()
    body = "\n".join(lines)
    for disclaimer in disclaimers:
        body = body.replace(disclaimer, "")
    kept = _drop_trailing_junk(body.split("\n"))
    kept = kept[: _signature_start(kept, rules)]
    kept = kept[: _disclaimer_start(kept)]
    return _tidy("\n".join(_drop_trailing_junk(kept))) or fragment


# --- keywords --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Keywords:
    """Staff keywords found on lines of their own in the new text of a reply.

    `#holding`, `#internal`, `#member` (any case, a trailing `.` or `!` allowed) set the
    flags; the first readable `#extend N [reason]`
    (`#extend 5 awaiting contractor survey`, `#extend 5 days - awaiting survey`) gives
    `extend_days` and `extend_reason` ("" when none was given). An `#extend` line that could
    not be read (`#extend`, `#extend five`, `#extend 0`, more than EXTEND_MOST_DAYS) is listed
    in `malformed`, so the officer can be told rather than the request silently ignored.
    """

    holding: bool = False
    internal: bool = False
    member: bool = False
    extend_days: int | None = None
    extend_reason: str = ""
    malformed: tuple[str, ...] = ()

    @property
    def extending(self) -> bool:
        """Whether the reply asks for an extension, readably or not."""
        return self.extend_days is not None or bool(self.malformed)  # only #extend lines


def _extend_args(rest: str) -> tuple[int, str] | None:
    match = _EXTEND_ARGS.match(rest)
    if not match or not 1 <= int(match[1]) <= EXTEND_MOST_DAYS:
        return None
    return int(match[1]), _WS.sub(" ", match[2]).strip()


def find_keywords(text: str, *, languages: Iterable[str] = DEFAULT_LANGUAGES) -> Keywords:
    """Keywords in the new part of a reply body (the whole body may be passed).

    Only lines before the quoted history count, `>`-quoted lines never do, and a keyword
    must be the whole line (`#holding` in a sentence is not one), in any case. Lines below
    the sign-off still count: an officer may type a keyword under their name.
    """
    rules = _rules(tuple(languages))
    source = _lines_of(text)
    try:
        lines, _ = _new_fragment(source, rules)
    except Exception:  # noqa: BLE001 - third-party patterns on untrusted text
        lines = [line.strip() for line in source.split("\n")]
    flags: set[str] = set()
    extend: tuple[int, str] | None = None
    malformed: list[str] = []
    for line in lines:  # stripped; a `>`-quoted line never starts with "#"
        if flag := _FLAG.match(line):
            flags.add(flag[1].lower())
        elif ext := _EXTEND.match(line):
            args = _extend_args(ext[1])
            if args is None:
                malformed.append(line)
            elif extend is None:
                extend = args
    return Keywords(
        holding="holding" in flags,
        internal="internal" in flags,
        member="member" in flags,
        extend_days=extend[0] if extend else None,
        extend_reason=extend[1] if extend else "",
        malformed=tuple(malformed),
    )


def strip_keywords(text: str) -> str:
    """The text without its keyword lines, so they never reach the member.

    Every line that is a keyword (also a malformed `#extend`, also under `>` quote markers,
    so a quoted internal note cannot leak either) is removed; runs of blank lines left
    behind become one, and the result is stripped.
    """
    kept = []
    for raw in _lines_of(text).split("\n"):
        line = _QUOTE_MARKS.sub("", raw).strip()
        if _FLAG.match(line) or _EXTEND.match(line):
            continue
        kept.append(raw)
    return _tidy("\n".join(kept))


def is_status_request(
    subject: str, text: str, *, languages: Iterable[str] = DEFAULT_LANGUAGES
) -> bool:
    """A councillor asking for their dashboard: the subject, without reply prefixes and case
    tags, is `status` (any case, trailing `?`, `!`, `.` or `:` allowed), or the first
    non-empty line of the new text of the body is."""
    if _STATUS.match(without_tags(subject)):
        return True
    return asks_for_status(subject, extract_reply(text, languages=languages))


def asks_for_status(subject: str, new_text: str) -> bool:
    """`is_status_request` for text that is already only the new part (or that no earlier
    message can precede, such as a fresh email): no reply parsing, which is the slow part."""
    if _STATUS.match(without_tags(subject)):
        return True
    first = next((line.strip() for line in new_text.split("\n") if line.strip()), "")
    return bool(_STATUS.match(first))


# --- satisfaction ratings --------------------------------------------------------------
# A reply whose new text is only a rating — "4", "4/5", "5 - thank you", "Rating: 3", with
# at most a short sign-off under it — answers the satisfaction question: routing records it
# on the case without reopening it. Anything longer is a person writing.

LOWEST, HIGHEST = 1, 5

# The first line: an optional label, the number, an optional "/5" or "out of 5" and "stars",
# then nothing, or a short comment after punctuation or a thank-you ("5 thanks").
_RATING_LINE = re.compile(
    r"""^(?:(?:rating|score|satisfaction|mark)\s*[:=-]?\s*)?
        (?P<n>\d+)
        (?:\s*(?:/|out\s+of|of)\s*5)?
        (?:\s*stars?)?
        (?P<rest>.*)$""",
    re.IGNORECASE | re.VERBOSE,
)
_COMMENT = re.compile(
    r"^(?:\s*[-\u2013\u2014,.!:;)]|\s+(?=thank|many thanks|cheers))", re.IGNORECASE
)
SHORT = 40  # characters: a comment or a sign-off line, never a message
SIGN_OFF_LINES = 3


def rating_of(text: str | None) -> int | None:
    """The rating a reply's new text gives, or None when it says more than a rating."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    found = _RATING_LINE.match(lines[0])
    if found is None:
        return None
    number, rest = int(found["n"]), found["rest"]
    if not LOWEST <= number <= HIGHEST:
        return None
    if rest.strip() and (not _COMMENT.match(rest) or not _short(rest)):
        return None
    sign_off = lines[1:]
    if len(sign_off) > SIGN_OFF_LINES or not all(_short(line) for line in sign_off):
        return None
    return number


def _short(text: str) -> bool:
    """A comment or sign-off, not a message: short and without figures."""
    return len(text.strip()) <= SHORT and not any(ch.isdigit() for ch in text)
