"""STAND-IN (schedule branch only): the digests helper's real module replaces this in the
merge. It keeps the agreed interface and returns nothing, so the scheduler runs meanwhile."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlmodel import Session

from mailbridge.services import Services


@dataclass(frozen=True, slots=True)
class DigestMail:
    key: str  # idempotency key, e.g. "digest:coordinators:2026-11-25"
    kind: str  # "coordinator_digest" | "member_digest" | "management_summary"
    to: tuple[str, ...]
    template: str  # template name in templates/
    context: dict[str, Any]


def coordinator_digest(session: Session, services: Services, day: date) -> DigestMail | None:
    return None


def member_digests(session: Session, services: Services, week_start: date) -> list[DigestMail]:
    return []


def management_summaries(
    session: Session, services: Services, week_start: date
) -> list[DigestMail]:
    return []
