"""Structured log lines, and records held until the work they describe is committed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from mailbridge import logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """The root logger writing to a string, as `logs.setup` sets it up, restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.KeyValueFormatter(as_json=True))
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def lines(out: io.StringIO) -> list[tuple[str, str]]:
    return [(r["level"], r["msg"]) for r in map(json.loads, out.getvalue().splitlines())]


log = logging.getLogger("mailbridge.test")


def test_key_values_never_hide_the_fields(stream: io.StringIO) -> None:
    log.info("case opened", extra={"case": "MQ-2026-00001"})
    record = json.loads(stream.getvalue())
    assert (record["msg"], record["case"], record["logger"]) == (
        "case opened",
        "MQ-2026-00001",
        "mailbridge.test",
    )


def test_released_records_go_out_in_order_when_the_block_ends(stream: io.StringIO) -> None:
    with logs.held() as held:
        log.info("one")
        log.debug("two")
        assert stream.getvalue() == ""
        held.release()
        assert stream.getvalue() == ""  # not before the block is over
    log.info("three")
    assert lines(stream) == [("info", "one"), ("debug", "two"), ("info", "three")]


def test_records_of_a_block_not_released_are_dropped(stream: io.StringIO) -> None:
    with pytest.raises(RuntimeError), logs.held() as held:
        log.info("rolled back")
        raise RuntimeError("boom")
    with logs.held():
        log.info("never released either")
    assert held.released is False
    assert lines(stream) == []


def test_warnings_and_errors_go_out_at_once(stream: io.StringIO) -> None:
    with logs.held():
        log.info("held")
        log.warning("careful")
        log.error("broken")
        assert lines(stream) == [("warning", "careful"), ("error", "broken")]
    assert lines(stream) == [("warning", "careful"), ("error", "broken")]


def test_an_inner_block_waits_for_the_outer_decision(stream: io.StringIO) -> None:
    with logs.held() as outer:
        with logs.held() as kept:
            log.info("first message")
            kept.release()
        with logs.held():
            log.info("second message, rolled back")
        assert lines(stream) == []
        outer.release()
    assert lines(stream) == [("info", "first message")]
    with logs.held(), logs.held() as inner:
        log.info("released inside, dropped outside")
        inner.release()
    assert lines(stream) == [("info", "first message")]


def test_a_handler_level_still_applies_to_released_records(stream: io.StringIO) -> None:
    logging.getLogger().handlers[0].setLevel(logging.INFO)
    with logs.held() as held:
        log.debug("too detailed for this handler")
        log.info("kept")
        held.release()
    assert lines(stream) == [("info", "kept")]


@pytest.mark.parametrize("as_json", [False, True])
def test_a_log_line_carries_no_escape_sequence(as_json: bool) -> None:
    """A message may quote a server's or an email's words: a log read in a terminal must
    not act on their escape sequences (text: removed; JSON: escaped by the encoding)."""
    record = logging.makeLogRecord(
        {
            "msg": "refused: \x1b]8;;http://evil.example/\x07553\x1b]8;;\x07 \x9b2J",
            "sender": "\x1b]0;title\x07x@evil.example",
        }
    )
    line = logs.KeyValueFormatter(as_json=as_json).format(record)
    assert "\x1b" not in line and "\x9b" not in line and "\x07" not in line
    assert "553" in line
