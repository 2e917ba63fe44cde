"""Printing rich tables that read well anywhere.

On a terminal rich lays a table out to the terminal's width. Written to a pipe or a log file, a rich
``Console`` assumes 80 columns and squeezes wide tables (cut method names, wrapped headers); there
:func:`print_table` prints at the table's natural width instead (up to ``MAX_LOG_WIDTH`` columns, past
which long cell texts wrap), so logs keep every name and header whole.
"""
from __future__ import annotations

MAX_LOG_WIDTH = 250


def table_width(console, table, max_width: int = MAX_LOG_WIDTH) -> int:
    """Columns ``table`` needs without wrapping or cutting anything (at most ``max_width``)."""
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update_width(max_width), table).maximum
    return max(console.width, min(natural, max_width))


def print_table(console, table, max_width: int = MAX_LOG_WIDTH) -> None:
    """``console.print(table)`` on a terminal; elsewhere at the table's natural width (see module doc)."""
    if console.is_terminal:
        console.print(table)
        return
    from rich.console import Console

    wide = Console(file=console.file, width=table_width(console, table, max_width), color_system=None,
                   highlight=False, emoji=False)
    wide.print(table)
