"""The signing key, as an operator meets it: `mailbridge keys generate` makes one, `run`
refuses to start without a good one and `check` says so (issue #13, item 7).

An empty key file used to turn signing off silently while `check` said ready, and a 1-byte
key was recovered from one Message-ID in 11 tries.
"""

from __future__ import annotations

import logging
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import CONFIG, invoke, ok, one_line_error

WITH_KEY_FILE = CONFIG.replace(
    'signing_key_env = "MAILBRIDGE_TEST_SIGNING_KEY"', 'signing_key_file = "signing.key"'
)


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def home(tmp_path: Path, config: str = WITH_KEY_FILE) -> Path:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "config.toml").write_text(config, encoding="utf-8")
    return tmp_path / "config.toml"


def test_keys_generate_writes_32_random_bytes_only_its_owner_can_read(tmp_path: Path) -> None:
    first, second = tmp_path / "a.key", tmp_path / "b.key"
    out = ok(invoke("keys", "generate", str(first)))
    assert f"wrote a new signing key (32 random bytes as 64 hexadecimal digits) to {first}" in out
    ok(invoke("keys", "generate", str(second)))
    for path in (first, second):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert re.fullmatch(r"[0-9a-f]{64}\n", path.read_text())  # 32 bytes, as hex text
    assert first.read_text() != second.read_text()


def test_keys_generate_never_overwrites_a_key_unless_forced(tmp_path: Path) -> None:
    key = tmp_path / "signing.key"
    ok(invoke("keys", "generate", str(key)))
    before = key.read_text()
    one_line_error(invoke("keys", "generate", str(key)), 1, f"{key} already exists", "--force")
    assert key.read_text() == before
    ok(invoke("keys", "generate", str(key), "--force"))
    assert key.read_text() != before
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing.key"]  # no temp file left


def test_keys_generate_without_a_path_writes_the_file_the_config_names(tmp_path: Path) -> None:
    config = home(tmp_path)
    ok(invoke("keys", "generate", "--config", str(config)))
    assert len((tmp_path / "signing.key").read_text().strip()) == 64
    ok(invoke("run", "--once", "--config", str(config)))

    other = home(tmp_path / "other", CONFIG)  # the key comes from the environment there
    one_line_error(invoke("keys", "generate", "--config", str(other)), 1, "no signing_key_file")


@pytest.mark.parametrize(
    ("content", "holds"),
    [("", "holds no key"), ("\n", "holds no key"), ("k", "holds only 1 bytes"),
     ("x" * 31 + "\n", "holds only 31 bytes")],
)  # fmt: skip
def test_run_refuses_an_empty_or_short_key_naming_the_file(
    tmp_path: Path, content: str, holds: str
) -> None:
    config = home(tmp_path)
    (tmp_path / "signing.key").write_text(content)
    key = tmp_path / "signing.key"
    one_line_error(
        invoke("run", "--once", "--config", str(config)),
        2,
        f"[security] signing_key: file {key} {holds}, at least 32 are needed",
        "mailbridge keys generate",
    )
    assert not (tmp_path / "mailbridge.db").exists()  # stopped before anything was touched

    result = invoke("check", "--config", str(config))
    assert result.exit_code == 1
    assert f"FAILED  keys     file {key}" in result.stdout
    assert holds in result.stdout


def test_run_refuses_to_start_without_a_signing_key(tmp_path: Path) -> None:
    config = home(tmp_path, CONFIG.replace('signing_key_env = "MAILBRIDGE_TEST_SIGNING_KEY"', ""))
    one_line_error(
        invoke("run", "--once", "--config", str(config)),
        2,
        "[security] has no signing key",
        "mailbridge keys generate",
    )
    result = invoke("check", "--config", str(config))
    assert result.exit_code == 1
    assert "no signing key, so mailbridge run will not start" in result.stdout


def test_a_short_previous_key_is_refused_too(tmp_path: Path) -> None:
    """A key too short to sign with is too short to trust a signature from: keeping it for
    replies would keep it forgeable."""
    config = home(
        tmp_path,
        WITH_KEY_FILE.replace("[security]\n", '[security]\nprevious_signing_keys = ["old.key"]\n'),
    )
    ok(invoke("keys", "generate", str(tmp_path / "signing.key")))
    (tmp_path / "old.key").write_text("guessable\n")
    one_line_error(
        invoke("run", "--once", "--config", str(config)),
        2,
        f"[security] previous_signing_keys: file {tmp_path / 'old.key'} holds only 9 bytes",
    )
    ok(invoke("keys", "generate", str(tmp_path / "old.key"), "--force"))
    ok(invoke("run", "--once", "--config", str(config)))
    assert (
        "signing key of 64 bytes; 1 previous key still accepted on replies"
        in invoke("check", "--config", str(config)).stdout
    )


def test_check_warns_when_others_may_read_the_key(tmp_path: Path) -> None:
    config = home(tmp_path)
    key = tmp_path / "signing.key"
    ok(invoke("keys", "generate", str(key)))
    assert "ok      keys" in ok(invoke("check", "--config", str(config)))
    key.chmod(0o644)
    out = ok(invoke("check", "--config", str(config)))
    assert "ok      keys" in out and "warning files" in out
    assert f"{key} is 0644, open to group or others on this server: chmod 600 {key}" in out
