"""Shared fixtures. Tests that need ../shared skip with a reason when it is absent (fresh clones)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test saying why."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (../shared is only on the developers' machines and CI)")
    return p


@pytest.fixture
def shared():
    return shared_path
