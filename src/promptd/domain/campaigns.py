"""A/B campaign assignment: a pure function of (campaign, who), so it is sticky without stored state."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence

__all__ = ["assign", "campaign_uuid", "uniform"]

CAMPAIGN_NAMESPACE = uuid.UUID("0b7c2a4e-8d51-4c9f-9e3a-5a1f6b2c7d80")


def uniform(*parts: str) -> float:
    """A number in [0, 1) that depends only on `parts` (SHA-256 of them)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(campaign_id: str, who: str, models: Sequence[str], traffic_split: float, *, forced: bool) -> str | None:
    """The model `who` (a session or user id) is served in this campaign, or None when it stays outside it.

    A share `traffic_split` of identities enters (all of them when `forced`); inside, they split evenly.
    """
    if not forced and uniform(campaign_id, "enter", who) >= traffic_split:
        return None
    return models[int(uniform(campaign_id, "arm", who) * len(models))]


def campaign_uuid(project: str, key: str) -> str:
    return str(uuid.uuid5(CAMPAIGN_NAMESPACE, f"{project}/{key}"))
