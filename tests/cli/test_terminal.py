"""What reaches the terminal (issue #13, item 8): every command that prints what an email
said prints no escape sequence and no control character but newline and tab, in every
format, and rich markup in email text prints as written.

The email (tests/fixtures/mail/attack_terminal_escapes_in_subject_body_filename_and_name.eml)
carries OSC 8 links, ESC [8m hidden text, ESC ] 0 title changes, an OSC 52 clipboard write
and C1 controls (U+009B, U+009D) in its subject, body, attachment name and From name. They
reached the terminal in `cases list` and `case show`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import Result

from mailbridge.mailbox.maildir import maildir_drop
from mailbridge.terminal import terminal_safe
from tests.factories import fixture_bytes
from tests.helpers.cli import CONFIG, invoke
from tests.helpers.clock import FIXED_NOW, clock_at

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
HOSTILE = "attack_terminal_escapes_in_subject_body_filename_and_name.eml"
MEMBER = b"<cllr.jane.smith@example.gov.uk>"
STRANGER = b"<someone@evil.example>"
REF = "MQ-2026-00001"

# Anything a terminal would act on: C0 but tab and newline (CR only in CRLF), DEL, C1.
UNSAFE = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One pass over the hostile email from a member (a case) and from a stranger (the
    quarantine), with an officer assigned, at FIXED_NOW."""
    root = tmp_path_factory.mktemp("terminal")
    (root / "config.toml").write_text(CONFIG, encoding="utf-8")
    raw = fixture_bytes(HOSTILE)
    root_logger = logging.getLogger()
    handlers, level = root_logger.handlers[:], root_logger.level
    with clock_at(FIXED_NOW):
        cli(root, "members", "import", str(SAMPLES / "members.csv"))
        cli(root, "officers", "import", str(SAMPLES / "officers.csv"))
        maildir_drop(root / "mailbox", raw, FIXED_NOW)
        maildir_drop(
            root / "mailbox",
            raw.replace(MEMBER, STRANGER).replace(b"7c1e@", b"7c1f@"),
            FIXED_NOW,
        )
        cli(root, "run", "--once")
        cli(root, "case", "assign", REF, "--lead", "priya.shah@example.gov.uk")
    root_logger.handlers[:], root_logger.level = handlers, level
    yield root


def cli(root: Path, *args: str) -> Result:
    result = invoke(*args, "--config", str(root / "config.toml"))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def test_the_email_is_as_hostile_as_it_claims() -> None:
    """The fixture's escapes survive parsing: the test below could fail."""
    from mailbridge.mail.parsing import parse

    parsed = parse(fixture_bytes(HOSTILE))
    for text in (parsed.subject, parsed.body_text):
        assert "\x1b]8;;http://evil.example/" in text and "\x9b" in text


@pytest.mark.parametrize(
    "args",
    [
        ("cases", "list"),
        ("cases", "list", "--format", "csv"),
        ("cases", "list", "--format", "json"),
        ("cases", "list", "--search", "pothole"),
        ("case", "show", REF),
        ("dashboard",),
        ("quarantine", "list"),
        ("quarantine", "show", "1"),
        ("report", "--from", "2026-11-01", "--to", "2026-12-31"),
        ("report", "--from", "2026-11-01", "--to", "2026-12-31", "--format", "csv"),
        ("report", "--from", "2026-11-01", "--to", "2026-12-31", "--format", "html"),
        ("schedule", "show", "--all"),
        ("addresses", "list"),
        ("members", "list"),
        ("members", "list", "--format", "csv"),
        ("run", "--once"),
    ],
    ids=" ".join,
)
def test_no_command_prints_what_a_terminal_would_obey(home: Path, args: tuple[str, ...]) -> None:
    with clock_at(FIXED_NOW):
        result = cli(home, *args)
    for stream in (result.stdout, result.stderr):
        assert "\x1b" not in stream
        assert not UNSAFE.search(stream), UNSAFE.findall(stream)


def test_case_show_prints_the_words_without_the_sequences(home: Path) -> None:
    with clock_at(FIXED_NOW):
        out = cli(home, "case", "show", REF).stdout
    assert "Pothole on Mill Lane pay at evil.example" in out  # hidden text shows
    assert "Inbox (0)" not in out  # a title is no text
    assert "[link=http://evil.example]see photos[/link]" in out  # markup prints as written
    assert "[bold]Rich markup[/bold] and [link=http://evil.example]a link[/link]" in out
    assert "C1 CSI: red, C1 OSC: , bell, backspacex" in out


def test_case_attachments_names_the_saved_files_safely(home: Path, tmp_path: Path) -> None:
    with clock_at(FIXED_NOW):
        out = cli(home, "case", "attachments", REF, "--save", str(tmp_path)).stdout
    assert not UNSAFE.search(out) and "\x1b" not in out
    assert [p.name for p in tmp_path.iterdir()] == [
        terminal_safe(p.name) for p in tmp_path.iterdir()
    ]


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("Pothole on Mill Lane", "Pothole on Mill Lane"),
        ("\x1b]8;;http://evil.example/\x07Mill Lane\x1b]8;;\x07", "Mill Lane"),  # OSC 8, BEL
        ("\x1b]8;;http://evil.example/\x1b\\Mill Lane\x1b]8;;\x1b\\", "Mill Lane"),  # ST
        ("a \x1b[8mhidden\x1b[0m b", "a hidden b"),
        ("\x1b]0;Inbox (0)\x07Subject", "Subject"),
        ("\x1b]52;c;Y3VybA==\x07copied", "copied"),
        ("\x9b31mred\x9b0m", "red"),  # C1 CSI
        ("\x9d0;title\x9cafter", "after"),  # C1 OSC to C1 ST
        ("\x1bPdevice\x1b\\ctl", "ctl"),  # DCS
        ("\x1bcreset", "reset"),
        ("bell\x07 nul\x00 del\x7f bs\x08", "bell nul del bs"),
        ("over\rwrite", "overwrite"),
        ("lines\r\nand\nlines\tand tabs", "lines\r\nand\nlines\tand tabs"),
        ("Müller, Bernd — 東京 [urgent]", "Müller, Bernd — 東京 [urgent]"),
        ("cut off \x1b]8;;http://evil.example/", "cut off "),
    ],
)
def test_terminal_safe(text: str, safe: str) -> None:
    assert terminal_safe(text) == safe
    assert terminal_safe(safe) == safe
