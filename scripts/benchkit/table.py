"""A printed table: a left-aligned label column, right-aligned figures, notes underneath."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def num(value: float | None, digits: int = 1) -> str:
    """A figure with thousands separators; blank when absent or not a number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:,.{digits}f}"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: str) -> None:
        self.rows.append([*cells, *[""] * (len(self.columns) - len(cells))])

    def render(self) -> str:
        widths = [max(len(r[i]) for r in [self.columns, *self.rows]) for i in range(len(self.columns))]
        lines = [f"\n## {self.title}\n"]
        for i, row in enumerate([self.columns, *self.rows]):
            label, *figures = row
            lines.append(
                "  ".join([label.ljust(widths[0]), *(f.rjust(w) for f, w in zip(figures, widths[1:], strict=True))])
            )
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.extend(f"  {note}" for note in self.notes)
        return "\n".join(lines)
