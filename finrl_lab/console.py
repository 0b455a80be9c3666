"""The one place user-facing output goes: tables and progress through rich."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table

# A pipe or file gets 120 columns instead of rich's default 80, so tables fit.
console = Console(width=None if sys.stdout.isatty() else 120)


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> None:
    """Print a table; floats get four decimals unless already formatted as text."""
    table = Table(title=title, show_lines=False)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_format(value) for value in row))
    console.print(table)


def print_mapping(title: str, mapping: Mapping[str, object]) -> None:
    print_table(title, ["key", "value"], list(mapping.items()))


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
