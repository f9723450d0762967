"""Config errors name the file and the key, in one line, with exit code 2 from the CLI."""

import re
import textwrap
from pathlib import Path

import pytest

from mailbridge.config import SsoConfig, WebConfig, check_secrets, load_config
from mailbridge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_is_valid_and_documents_every_section() -> None:
    config = load_config(ROOT / "config.example.toml")
    assert config.cases.reference_prefix == "MQ"
    assert (config.alerts.no_fetch_minutes, config.alerts.outbox_stuck_minutes) == (30, 30)
    assert [a.name for a in config.service_areas][:1] == ["Highways"]
    assert config.mailbox.url.startswith("maildir:/")  # made absolute beside the file
    text = (ROOT / "config.example.toml").read_text()
    for section in (
        "[council]",
        "[mailbox]",
        "[smtp]",
        "[database]",
        "[storage]",
        "[cases]",
        "[templates]",
        "[security]",
        "[alerts]",
        "[logging]",
        "[[service_areas]]",
        "[[coordinators]]",
        "[mailbox.oauth]",
        "[web]",
        "[web.sso]",
    ):
        assert section in text


def commented_block(text: str, header: str) -> str:
    """The example's commented-out `# [header]` block as it reads once uncommented: the
    header and its `# key = value` lines (`# # ...` alternatives stay commented)."""
    lines = text.splitlines()
    start = lines.index(f"# {header}")
    kept = [header]
    for line in lines[start + 1 :]:
        if not line.startswith("#"):
            break
        if re.match(r"# \w+ = ", line):
            kept.append(line.removeprefix("# "))
    return "\n".join(kept) + "\n"


def test_the_examples_web_sections_load_once_uncommented_and_name_every_key(
    tmp_path: Path,
) -> None:
    text = (ROOT / "config.example.toml").read_text()
    web = commented_block(text, "[web]")
    sso = commented_block(text, "[web.sso]")

    config = load_config(write(tmp_path, web + sso))

    assert config.web.base_url == "https://enquiries.example.gov.uk"
    assert config.web.trusted_proxies == ["127.0.0.1"]
    assert config.web.keep_signed_in_coordinators is False
    assert config.web.sso is not None
    assert config.web.sso.discovery_url == (
        "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0"
        "/.well-known/openid-configuration"
    )
    assert str(config.web.sso.client_secret_file) == "/etc/mailbridge/sso-secret"
    for model in (WebConfig, SsoConfig):
        for key in model.model_fields:
            if key != "sso":
                assert re.search(rf"^# (# )?{key} = ", text, re.M), f"{key} not in the example"
    assert "web" not in load_config(ROOT / "config.example.toml").model_fields_set


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[mailbox]\nurll = 'x'\n", "mailbox.urll: unknown key"),
        ("[mailbox]\nurl = 'ftp://host'\n", "mailbox.url: 'ftp://host' must start with"),
        ("[smtp]\nurl = 'smtp://:25'\n", "smtp.url: 'smtp://:25' has no host name"),
        ("[sla]\nresponse_working_days = 'ten'\n", "sla.response_working_days"),
        ("[council]\ntimezone = 'Europe/Londres'\n", "not a known time zone"),
        ("[council]\nclosure_days = ['2026-13-01']\n", "not a date like"),
        ("[database]\nurl = 'mysql://x'\n", "database.url"),
        ("[mailbox\n", "not valid TOML"),
        ("[storage]\nmax_attachment_bytes = 2000000000\n", "storage.max_attachment_bytes"),
        ("[alerts]\nrecipients = ['it ops']\n", "alerts.recipients.0"),
        ("[alerts]\nno_fetch_minutes = 0\n", "alerts.no_fetch_minutes"),
    ],
)
def test_bad_config_gives_one_line_naming_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(str(path))
    assert expected in message
    assert "\n" not in message
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[mailbox]\nurl = 'imap://jane:hunter2@mail.example:99999/'\n",
         "mailbox.url: 'imap://***@mail.example:99999/' has a bad port"),
        ("[mailbox]\nurl = 'imapx://jane:hunter2@mail.example/'\n",
         "mailbox.url: 'imapx://***@mail.example/' must start with"),
        ("[smtp]\nurl = 'smtp://jane:hunter2@/'\n", "smtp.url: 'smtp://***@/' has no host name"),
        ("[database]\nurl = 'mysql://jane:hunter2@db.example/cases'\n",
         "database.url: 'mysql://***@db.example/cases' must start with"),
    ],
)  # fmt: skip
def test_a_url_with_a_password_in_it_is_never_echoed(
    tmp_path: Path, text: str, expected: str
) -> None:
    """A config error goes to a terminal, a journal and often a ticket: the user name and
    password written into a URL show as ***, even when the URL itself is what is wrong."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert expected in str(err.value)
    assert "hunter2" not in str(err.value) and "jane" not in str(err.value)


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"copy config\.example\.toml"):
        load_config(tmp_path / "nope.toml")


def test_missing_secret_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MB_TEST_IMAP_PW", raising=False)
    path = write(
        tmp_path,
        "[mailbox]\nurl = 'imaps://enquiries@imap.example.org/'\n"
        "password_env = 'MB_TEST_IMAP_PW'\n"
        "[security]\nsigning_key_env = 'MAILBRIDGE_TEST_SIGNING_KEY'\n",
    )
    config = load_config(path)
    with pytest.raises(ConfigError, match=r"MB_TEST_IMAP_PW is not set"):
        check_secrets(config)
    monkeypatch.setenv("MB_TEST_IMAP_PW", "s3cret")
    check_secrets(config)


def test_secret_from_file_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "smtp.secret").write_text("pw-from-file\n")
    path = write(
        tmp_path,
        "[smtp]\nurl = 'smtp+starttls://me@smtp.example.org:587'\npassword_file = 'smtp.secret'\n",
    )
    config = load_config(path)
    assert config.secret("[smtp] password", config.smtp.password) == "pw-from-file"


def test_oauth_msal_requires_its_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[mailbox]\nurl = 'imaps://shared@outlook.office365.com/'\n"
        "[mailbox.oauth]\nprovider = 'msal'\nclient_id = 'abc'\n",
    )
    with pytest.raises(ConfigError, match=r"mailbox\.oauth: provider 'msal' needs tenant_id"):
        load_config(path)


@pytest.mark.parametrize(
    ("section", "url", "extra", "refused"),
    [
        ("mailbox", "imap://jane@mail.example.org/", "", True),
        ("mailbox", "imap://jane@192.0.2.7:143/", "", True),
        ("mailbox", "imap://jane@127.0.0.1:143/", "", False),  # never leaves this machine
        ("mailbox", "imap://jane@127.8.9.10/", "", False),
        ("mailbox", "imap://jane@[::1]:143/", "", False),
        ("mailbox", "imap://jane@localhost/", "", False),
        ("mailbox", "imap://jane@LOCALHOST/", "", False),
        ("mailbox", "imap://jane@localhost.evil.example/", "", True),
        ("mailbox", "imap://jane@mail.example.org/", "allow_plaintext_login = true", False),
        ("mailbox", "imap://mail.example.org/", "username = 'jane'", True),
        ("mailbox", "imaps://jane@mail.example.org/", "", False),
        ("mailbox", "imap+starttls://jane@mail.example.org/", "", False),
        ("smtp", "smtp://jane@smtp.example.org:25", "", True),
        ("smtp", "smtp://smtp.example.org:25", "", False),  # a relay: no login at all
        ("smtp", "smtp://smtp.example.org:25", "username = 'jane'", True),
        ("smtp", "smtp+starttls://jane@smtp.example.org", "", False),
        ("smtp", "smtps://jane@smtp.example.org", "", False),
        ("smtp", "smtp://jane@smtp.example.org", "allow_plaintext_login = true", False),
        ("smtp", "maildir:./outbox", "", False),
    ],
)
def test_a_login_in_clear_text_is_refused_unless_loopback_or_allowed(
    tmp_path: Path, section: str, url: str, extra: str, refused: bool
) -> None:
    """Password and XOAUTH2 alike: whatever proves who we are must not cross a network
    unencrypted."""
    config = load_config(write(tmp_path, f"[{section}]\nurl = '{url}'\n{extra}\n"))
    server = getattr(config, section)
    words = server.plaintext_login_refused(section)
    assert (words is not None) == refused
    if refused:
        assert f"[{section}] url {server.scheme}://" in words
        assert f"set [{section}] allow_plaintext_login = true" in words


def test_run_refuses_a_login_in_clear_text_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MB_TEST_IMAP_PW", "s3cret")
    path = write(
        tmp_path,
        "[mailbox]\nurl = 'imap://enquiries@imap.example.org/'\n"
        "password_env = 'MB_TEST_IMAP_PW'\n"
        "[security]\nsigning_key_env = 'MAILBRIDGE_TEST_SIGNING_KEY'\n",
    )
    with pytest.raises(ConfigError) as err:
        check_secrets(load_config(path))
    assert str(err.value).startswith(f"{path}: [mailbox] url imap://imap.example.org would send")
    assert "s3cret" not in str(err.value) and "enquiries" not in str(err.value)


def test_the_readmes_web_examples_are_valid_config(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [
        textwrap.dedent(body)
        for indent, body in re.findall(r"^( *)```toml\n(.*?)^\1```", readme, re.M | re.S)
        if "[web" in body
    ]
    assert len(blocks) == 3  # Entra ID, another provider, behind a proxy
    providers = []
    for block in blocks:
        config = load_config(write(tmp_path, block))
        if config.web.sso is not None:
            providers.append(config.web.sso.provider)
            assert config.web.sso.discovery_url.endswith("/.well-known/openid-configuration")
        else:
            assert config.web.trusted_proxies
    assert providers == ["entra", "oidc"]
