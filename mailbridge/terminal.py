"""Text fit for a terminal: what an email says, with nothing a terminal would obey.

A subject, a name or a body is written by whoever sent the email. Printed as it came, its
escape sequences act on the coordinator's terminal: an OSC 8 link shows one address and
opens another, ESC [8m hides text, ESC ] 0 retitles the window, and C1 controls (U+009B is
CSI on many terminals) do the same in one character. The command line prints every string
through `terminal_safe` (cli/context.py); the text logs do too (logs.py).
"""

from __future__ import annotations

import re

# Whole sequences first, so their parameters go with them (an OSC 8 link's address, a
# title); then any control character left. ECMA-48: CSI is ESC [ or U+009B, then parameter
# and intermediate bytes, then a final byte; OSC, DCS, SOS, PM and APC run to ST (ESC \ or
# U+009C) or, as xterm accepts for OSC, BEL; any other ESC takes one more character.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[\x20-\x7e]?"
)
# C0 but tab, newline and carriage return; DEL; C1. A character class alone: the usual text,
# with none of them, is scanned once and returned (a 4 KB body in ~0.04 ms; the sequences'
# alternation took 1 ms).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LONE_CR = re.compile(r"\r(?!\n)")  # returns to the line's start: it can overwrite it


def terminal_safe(text: str) -> str:
    """`text` without escape sequences and control characters; newline, tab and CRLF kept."""
    if _CONTROL.search(text) is not None:
        text = _CONTROL.sub("", _SEQUENCE.sub("", text))
    return _LONE_CR.sub("", text) if "\r" in text else text
