"""`spreadsheet.neutralise`, the one rule every CSV and XLSX mailbridge writes goes through:
text a spreadsheet would run as a formula gets a leading apostrophe, nothing else changes."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from mailbridge.spreadsheet import is_formula, neutralise, restore

EVIL = '=HYPERLINK("http://evil.example","x")'

QUOTED = [
    pytest.param(EVIL, id="equals"),
    pytest.param("+44 116 305 0000", id="plus-phone-number-as-text"),
    pytest.param("-5", id="minus-number-as-text"),
    pytest.param("-1 lamp posts working", id="minus-text"),
    pytest.param("@SUM(1+1)*cmd|' /C calc'!A0", id="at-dde"),
    pytest.param("\t=1+1", id="tab"),
    pytest.param("\rCarriage return", id="carriage-return"),
    pytest.param("\nLine feed", id="line-feed"),
    pytest.param("\x00=1+1", id="nul"),
    pytest.param('\uff1dHYPERLINK("http://evil.example")', id="full-width-equals"),
    pytest.param("\uff0b1+1", id="full-width-plus"),
    pytest.param("\uff0d1+1", id="full-width-minus"),
    pytest.param("\uff20SUM(A1)", id="full-width-at"),
    pytest.param("  =1+1", id="spaces-then-equals"),
    pytest.param("\u00a0=1+1", id="no-break-space-then-equals"),
    pytest.param("\u3000\uff1d1+1", id="ideographic-space-then-full-width-equals"),
]

PLAIN = [
    pytest.param("Pothole on Mill Lane", id="ordinary-text"),
    pytest.param("", id="empty"),
    pytest.param("   ", id="only-spaces"),
    pytest.param("a=b+c", id="signs-later"),
    pytest.param("Cllr Jane Smith-Jones", id="hyphen-inside"),
    pytest.param("jane.smith@example.gov.uk", id="email-address"),
    pytest.param("\u2212 5", id="unicode-minus-sign-is-text"),
    pytest.param("0116 305 0000", id="phone-number-without-plus"),
]
# Not a formula, so left alone; read back it loses the apostrophe (a name that really begins
# "'=" is the one text that does not survive a list and import unchanged).
QUOTED_ALREADY = "'=already quoted"


@pytest.mark.parametrize("text", QUOTED)
def test_formula_text_gets_an_apostrophe(text: str) -> None:
    assert is_formula(text)
    assert neutralise(text) == "'" + text


@pytest.mark.parametrize("text", [*PLAIN, QUOTED_ALREADY])
def test_plain_text_is_left_alone(text: str) -> None:
    assert not is_formula(text)
    assert neutralise(text) == text


@pytest.mark.parametrize(
    "value",
    [-5, 44, -2.5, 0, None, True, date(2026, 12, 1), datetime(2026, 12, 1, 10, 0)],
    ids=repr,
)
def test_numbers_dates_and_blanks_stay_what_they_are(value: object) -> None:
    """A spreadsheet stores a real number as a number: a negative figure is no formula."""
    assert neutralise(value) is value


@pytest.mark.parametrize("text", [*QUOTED, *PLAIN])
def test_restore_undoes_neutralise(text: str) -> None:
    """The people lists are also the import format: list, edit, import gives the same text."""
    assert restore(neutralise(text)) == text


def test_restore_keeps_an_apostrophe_it_did_not_add() -> None:
    assert restore("'tis the season") == "'tis the season"
    assert restore("O'Brien") == "O'Brien"
