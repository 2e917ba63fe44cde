"""Tables (markdown + CSV + rich) and figure helpers shared by every analysis.

Every figure is written as ``<stem>.png`` with its data as ``<stem>.md`` and ``<stem>.csv`` next to
it, so a reader can check numbers without opening the plot.
"""
from __future__ import annotations

import csv
import os
from typing import Sequence


def _fmt(v) -> str:
    if isinstance(v, float):
        if v != v:  # NaN
            return "nan"
        return f"{v:.4g}"
    return str(v)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(str(c))
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    if console is None:
        import sys

        # rich folds to 80 columns when stdout is not a terminal; these tables are wider than that
        console = Console() if sys.stdout.isatty() else Console(width=220)
    console.print(table)


def write_table(stem: str | None, title: str, columns: Sequence[str], rows: Sequence[Sequence],
                *, echo: bool = True, console=None) -> list[str]:
    """Print the table with rich (when ``echo``) and, when ``stem`` is given, write stem.md/.csv."""
    if echo:
        print_table(title, columns, rows, console)
    if stem is None:
        return []
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(f"# {title}\n\n" + markdown_table(columns, rows))
    with open(stem + ".csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(rows)
    return [stem + ".md", stem + ".csv"]


def new_figure(width: float = 7.0, height: float = 4.5, ncols: int = 1):
    """A matplotlib figure on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, stem: str) -> str:
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    fig.tight_layout()
    fig.savefig(stem + ".png", dpi=130, bbox_inches="tight")  # keeps legends placed outside the axes
    plt.close(fig)
    return stem + ".png"
