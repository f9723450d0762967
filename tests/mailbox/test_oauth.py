"""XOAUTH2 tokens: from an operator's command, with clear errors when it fails."""

from __future__ import annotations

import re
import sys

import pytest

from mailbridge.config import OAuthConfig
from mailbridge.errors import TransportError
from mailbridge.mailbox.oauth import token_provider, xoauth2_string


def test_command_provider_returns_the_token_printed_on_stdout() -> None:
    oauth = OAuthConfig(provider="command", command=[sys.executable, "-c", "print('tok-42')"])
    assert token_provider(oauth, None)() == "tok-42"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([sys.executable, "-c", "import sys; sys.exit(3)"], "failed (exit 3)"),
        ([sys.executable, "-c", "print('')"], "failed (exit 0)"),
        (["/nonexistent/get-token"], "could not run"),
    ],
)
def test_command_provider_failures_are_one_clear_line(argv: list[str], expected: str) -> None:
    provider = token_provider(OAuthConfig(provider="command", command=argv), None)
    with pytest.raises(TransportError, match=re.escape(expected)) as err:
        provider()
    assert "\n" not in str(err.value)


def test_msal_provider_unreachable_authority_is_one_clear_line() -> None:
    # An authority on a closed loopback port: MSAL cannot reach it, and we say so plainly.
    oauth = OAuthConfig(
        provider="msal",
        tenant_id="00000000-0000-0000-0000-000000000000",
        client_id="client",
        client_secret_env="UNUSED",
        authority="https://127.0.0.1:9/tenant",
    )
    provider = token_provider(oauth, "secret")
    with pytest.raises(TransportError, match=r"cannot get an OAuth token from https://127") as err:
        provider()
    assert "\n" not in str(err.value)


def test_xoauth2_string_is_the_sasl_initial_response() -> None:
    assert xoauth2_string("a@b", "T") == "user=a@b\x01auth=Bearer T\x01\x01"
