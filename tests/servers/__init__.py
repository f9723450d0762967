"""Real test servers (Dovecot, aiosmtpd, PostgreSQL) started by pytest fixtures."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str, why: str) -> None:
    """Skip locally when a server cannot be had; in CI a missing server fails the run."""
    message = f"{what} is not available: {why}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing server is a failure)", pytrace=False)
    pytest.skip(message)


def make_self_signed_cert(root: Path) -> tuple[Path, Path]:
    """A throwaway certificate for localhost/127.0.0.1: (cert.pem, key.pem) in root."""
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
