"""A run's counts by day: each row counts on the UTC day its partition column falls in (the `_day` column a
partitioned sync's mapped frame carries), so a run over many days can report each day's own figures, and
the days add up to the run's. What belongs to no day of the read (rows read again by id, a count of the
whole run) is kept under the day None.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

import pandas as pd


class DayCounts:
    """Counts per day and name, added up as a push goes; `None` is the day of what belongs to no day."""

    def __init__(self) -> None:
        self._days: defaultdict[str | None, Counter[str]] = defaultdict(Counter)

    def add(self, day: str | None, name: str, count: int = 1) -> None:
        self._days[day][name] += int(count)

    def count(self, name: str, days: Iterable[str | None] | pd.Series) -> None:
        """One for each row, on its day."""
        for day, rows in pd.Series(list(days), dtype=object).value_counts(dropna=False).items():
            self.add(None if pd.isna(day) else day, name, rows)

    def merge(self, other: DayCounts | Mapping[str | None, Mapping[str, int]]) -> None:
        for day, counts in (other.as_dict() if isinstance(other, DayCounts) else other).items():
            for name, count in counts.items():
                self.add(day, name, count)

    def as_dict(self) -> dict[str | None, dict[str, int]]:
        return {day: dict(counts) for day, counts in self._days.items()}
