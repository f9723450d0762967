"""The browser kit works: Chromium loads a page, a screenshot is a PNG, and axe-core passes a
labelled form and catches an unlabelled one (so the check can fail)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.browser import axe_violations, chromium, describe, screenshot

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body>
<main>
<h1>{title}</h1>
<form action="/search" method="get">
{field}
<button type="submit">Search</button>
</form>
</main>
</body>
</html>
"""
LABELLED = '<label for="q">Case reference</label>\n<input id="q" name="q" type="text">'
UNLABELLED = '<input id="q" name="q" type="text">'


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the test's output to its own words."""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """Two small pages served on loopback: one labelled, one with an unlabelled input."""
    (tmp_path / "labelled.html").write_text(PAGE.format(title="Find a case", field=LABELLED))
    (tmp_path / "unlabelled.html").write_text(PAGE.format(title="Find a case", field=UNLABELLED))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_page_loads_screenshot_is_a_png_and_axe_passes_it(
    site: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBRIDGE_TEST_ARTIFACTS", str(tmp_path / "artefacts"))
    with chromium() as driver:
        driver.get(f"{site}/labelled.html")
        assert driver.title == "Find a case"
        shot = screenshot(driver, "browser kit: labelled page")
        violations = axe_violations(driver)
    assert shot == tmp_path / "artefacts" / "browser-kit-labelled-page.png"
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert violations == [], describe(violations)


def test_axe_finds_an_unlabelled_input_at_320_px(
    site: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBRIDGE_TEST_ARTIFACTS", str(tmp_path))
    with chromium(width=320, height=800) as driver:
        driver.get(f"{site}/unlabelled.html")
        assert driver.execute_script("return window.innerWidth") == 320
        png = screenshot(driver, "narrow").read_bytes()
        violations = axe_violations(driver)
    assert int.from_bytes(png[16:20], "big") == 320  # the PNG's IHDR width
    assert "label" in {v["id"] for v in violations}, describe(violations)
    message = describe(violations)
    assert "- label [critical]: Form elements must have labels" in message
    assert "at #q" in message
