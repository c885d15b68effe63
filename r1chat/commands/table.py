"""Plain-text tables for the command line: columns aligned by what a terminal shows (a Chinese
character takes two cells), and a header row only on a terminal, so pipes get rows alone."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.cells import cell_len

from r1chat.sanitize import sanitize


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """`rows` (and `headers` on a terminal) with their columns padded to one width each; the
    last column is left as it is (titles run on). Cells are sanitised: they hold user and model
    text. `right`: the columns aligned to the right (numbers)."""
    shown = [[sanitize(c).replace("\n", " ") for c in row] for row in rows]
    if sys.stdout.isatty():
        shown.insert(0, list(headers))
    if not shown:
        return ""
    widths = [max(cell_len(r[i]) for r in shown) for i in range(len(shown[0]) - 1)]
    lines = []
    for row in shown:
        cells = []
        for i, cell in enumerate(row[:-1]):
            pad = " " * (widths[i] - cell_len(cell))
            cells.append(pad + cell if i in right else cell + pad)
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"
