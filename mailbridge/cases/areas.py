"""Which configured service area an enquiry's words point at: the keyword routing that an
email with no area and the on-line form's "Not sure" both leave the choice to (pure)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailbridge.config import ServiceArea


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    return re.compile(r"\b" + re.escape(keyword.strip()) + r"\b", re.IGNORECASE)


def guess_service_area(text: str, areas: Sequence[ServiceArea]) -> ServiceArea | None:
    """The area whose keywords occur most often; ties go to the first in config order."""
    best: ServiceArea | None = None
    best_hits = 0
    for area in areas:
        hits = sum(len(_keyword_pattern(k).findall(text)) for k in area.keywords if k.strip())
        if hits > best_hits:
            best, best_hits = area, hits
    return best
