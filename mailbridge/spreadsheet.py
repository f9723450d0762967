"""Cells fit for a spreadsheet: text that Excel, LibreOffice or Google Sheets would run as a
formula, made plain text.

Subjects and names come from email and from CSV files anyone may have edited: a member
named `=HYPERLINK("http://evil.example","x")` must stay a name in the sheet a coordinator
opens. Every CSV and XLSX mailbridge writes (the case export, `cases list --format csv`,
the report, the people lists, the calendar) passes its cells through `neutralise`, the one
rule. A text cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return (OWASP's
list), a line feed or NUL (OWASP ASVS 1.2.10), or a full-width `＝ ＋ － ＠` (read as the
plain sign by Excel in East Asian locales), also after leading spaces (spreadsheets may trim
them on import), gets a leading apostrophe: the spreadsheet shows the text and runs nothing.
Numbers and dates stay numbers and dates; a number written as text ("-5", "+44 116 305
0000") is quoted like any text, as a spreadsheet would otherwise read it as a formula.

defusedcsv does this for the csv module only, and changes the text more (a closing quote,
escaped pipes); one rule for CSV and XLSX alike needs no second library.
"""

from __future__ import annotations

from typing import TypeVar, overload

# The ASCII signs, their full-width forms, and the controls a sheet reads as a new cell or line.
FORMULA_STARTS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20\t\r\n\x00")
SPACES = " \u00a0\u3000"  # plain, no-break and ideographic spaces

T = TypeVar("T")


def is_formula(text: str) -> bool:
    """Would a spreadsheet read this text as a formula (or a command) rather than text?"""
    return text.lstrip(SPACES)[:1] in FORMULA_STARTS


@overload
def neutralise(value: str) -> str: ...
@overload
def neutralise(value: T) -> T: ...
def neutralise(value: object) -> object:
    """The cell to write: formula-like text behind an apostrophe, anything else as it is."""
    if isinstance(value, str) and is_formula(value):
        return "'" + value
    return value


def restore(text: str) -> str:
    """A cell read back from a file we wrote (the people lists are also the import format):
    the apostrophe `neutralise` added is taken off again."""
    if text.startswith("'") and is_formula(text[1:]):
        return text[1:]
    return text
