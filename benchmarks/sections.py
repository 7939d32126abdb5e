"""Parts of RESULTS.md that separate benchmark parts own (`python -m benchmarks firstrun`, `serve`):
each sits between `<!-- NAME:begin -->` and `<!-- NAME:end -->`, is replaced only by its own part, and
is kept when the main parts rewrite the file."""

from __future__ import annotations

import re

_BLOCK = re.compile(r"<!-- ([a-z0-9-]+):begin -->.*?<!-- \1:end -->", re.S)


def wrap(name: str, lines: list[str]) -> list[str]:
    """`lines` between the section's markers."""
    return [f"<!-- {name}:begin -->", *lines, f"<!-- {name}:end -->"]


def splice(text: str, name: str, lines: list[str]) -> str:
    """`text` with section `name` replaced by `lines` (appended when it is not there yet)."""
    block = "\n".join(wrap(name, lines))
    found = next((m for m in _BLOCK.finditer(text) if m.group(1) == name), None)
    if found:
        return text[: found.start()] + block + text[found.end():]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def keep(new: str, old: str) -> str:
    """`new` (a rewrite by the main parts) with every section of `old` carried over."""
    for m in _BLOCK.finditer(old):
        new = splice(new, m.group(1), m.group(0).splitlines()[1:-1])
    return new
