"""``comparison.md``: a reproduction's numbers beside the paper's, one Markdown table per reproduced table or
figure, with notes on what differs (data, model size, profile)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class Comparison:
    """One table of ``comparison.md``: ``title`` (the paper's table or figure), ``columns`` and ``rows`` (cells
    printed as given; numbers with 3 decimals, ``None`` as "-"), ``notes`` below it."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence] = field(default_factory=list)
    notes: Sequence[str] = ()

    def markdown(self) -> str:
        def cell(value) -> str:
            if value is None:
                return "-"
            if isinstance(value, float):
                return f"{value:.3f}"
            return str(value).replace("|", "\\|")

        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"comparison {self.title!r}: a row has {len(row)} cells for {len(self.columns)} "
                                 f"columns: {list(row)}")
        lines = [f"## {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---" for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in self.rows]
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def comparison_markdown(heading: str, comparisons: Sequence[Comparison]) -> str:
    """The whole ``comparison.md``: a ``heading`` line, then each table."""
    return "\n".join([f"# {heading}", "", *(c.markdown() for c in comparisons)])
