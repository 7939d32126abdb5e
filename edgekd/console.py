"""Where the CLI's output goes and how its tables look: one home, so that logs and CI (stdout not a
terminal, 80 columns) get whole cells instead of rich's `on… │ 62…`.

On a terminal, tables are rich tables. Anywhere else they are plain aligned text, as wide as their
longest cell, and the console never wraps or cuts a line (long paths stay on one line)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

# A cell: a str is printed as is (no rich markup: a label or path may hold brackets); a rich
# Text carries a style (e.g. a red FAIL), shown on a terminal and dropped in plain text.
Cell = Union[str, "Text"]
# The width of a console that writes to a file or a pipe: wider than any line we print, so rich
# never wraps or truncates (tables render at their natural width; nothing we print expands).
LOG_WIDTH = 10_000
# A section rule in a log is this wide (at least its title plus the dashes around it).
RULE_WIDTH = 80
COLUMN_GAP = "  "


def make_console(stderr: bool = False) -> Console:
    """A rich Console on stdout (or stderr): rich's usual one on a terminal; on a file, a pipe or
    CI, one that never wraps or truncates a line."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if _isatty(stream):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=LOG_WIDTH, soft_wrap=True)


def print_table(console: Console, title: str, header: Sequence[str], rows: Iterable[Sequence[Cell]],
                justify: Sequence[str] = (), show_header: bool = True) -> None:
    """Print a table: a rich table on a terminal (a long cell folds onto more lines), plain aligned
    text elsewhere (every cell whole, no ellipsis). `justify`: "left" or "right" per column."""
    rows = [list(row) for row in rows]
    sides = [justify[i] if i < len(justify) else "left" for i in range(len(header))]
    if console.is_terminal:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(title), title_justify="left", show_header=show_header)
        for name, side in zip(header, sides, strict=True):
            table.add_column(name, justify=side, overflow="fold")  # type: ignore[arg-type]
        for row in rows:
            table.add_row(*(_text(cell) for cell in row))
        console.print(table)
        return
    console.print(_plain_table(title, header, rows, sides, show_header), markup=False, highlight=False,
                  emoji=False, soft_wrap=True)


def rule(console: Console, title: str) -> None:
    """A section header: rich's rule across a terminal, a fixed-width one in a log."""
    from rich.cells import cell_len
    from rich.rule import Rule
    from rich.text import Text

    width = None if console.is_terminal else max(RULE_WIDTH, cell_len(title) + 8)
    console.print(Rule(Text(title)), width=width)


def _plain_table(title: str, header: Sequence[str], rows: list[list[Cell]], sides: list[str],
                 show_header: bool) -> str:
    from rich.cells import cell_len

    lines = [[_plain(cell) for cell in row] for row in rows]
    if show_header:
        lines.insert(0, list(header))
    widths = [max((cell_len(line[i]) for line in lines if i < len(line)), default=0) for i in range(len(header))]
    if show_header:
        lines.insert(1, ["-" * w for w in widths])
    out = [title] if title else []
    for line in lines:
        cells = [_pad(cell, w, side, cell_len(cell)) for cell, w, side in zip(line, widths, sides, strict=False)]
        out.append(COLUMN_GAP.join(cells).rstrip())
    return "\n".join(out)


def _pad(cell: str, width: int, side: str, length: int) -> str:
    fill = " " * (width - length)
    return fill + cell if side == "right" else cell + fill


def _text(cell: Cell) -> Text:
    from rich.text import Text

    return cell if isinstance(cell, Text) else Text(str(cell))


def _plain(cell: Cell) -> str:
    return cell if isinstance(cell, str) else str(getattr(cell, "plain", cell))


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
