"""The real-world email corpus: ~190 emails from two MIME libraries' test suites, kept
outside the repository (../shared/corpus, or MAILBRIDGE_CORPUS)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.servers import unavailable


def corpus_dir() -> Path:
    """MAILBRIDGE_CORPUS, else the nearest `shared/corpus` beside the checkout or above it
    (`../shared/corpus` for a checkout next to it, as on the development machines)."""
    configured = os.environ.get("MAILBRIDGE_CORPUS")
    if configured:
        return Path(configured)
    checkout = Path(__file__).resolve().parents[2]
    for folder in checkout.parents:
        candidate = folder / "shared" / "corpus"
        if candidate.is_dir():
            return candidate
    return checkout.parent / "shared" / "corpus"


def corpus_files() -> list[Path]:
    root = corpus_dir()
    if not root.is_dir():
        unavailable("the real-world email corpus", f"{root} not found; set MAILBRIDGE_CORPUS")
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and not p.name.upper().startswith(("README", "LICENSE"))
    )  # fmt: skip
    if len(files) < 100:
        unavailable("the real-world email corpus", f"only {len(files)} files under {root}")
    return files
