"""Counts of the stateful test run, shared with the summary hook in this folder's conftest.py."""

from __future__ import annotations

from collections import Counter
from typing import Any

STEPS = 0
EXAMPLES = 0
KINDS: Counter[str] = Counter()
CURRENT: Any = None
"""The machine running now (the creation-time wave check reads what it observed)."""
