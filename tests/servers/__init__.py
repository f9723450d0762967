"""Real test servers (Dovecot, aiosmtpd, PostgreSQL) started by pytest fixtures."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str, why: str) -> None:
    """Skip locally when a server cannot be had; in CI a missing server fails the run."""
    message = f"{what} is not available: {why}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing server is a failure)", pytrace=False)
    pytest.skip(message)
