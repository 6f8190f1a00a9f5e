"""One parser for multi-value options: `--seeds 40 41 42`, `--seeds 40,41,42` and repeated
`--seeds 40 --seeds 41` all mean the same.

Click options take one value per occurrence; this rewrites the command line before Click sees it,
so that a multi-value option takes every word that follows it up to the next option, and commas
separate values too. Typer then receives a repeated option (`list[...]`).
"""

from __future__ import annotations

from collections.abc import Sequence

#: options that take several values, in every command that has them
MULTI_VALUE_OPTIONS = frozenset({"--seeds", "--ground-on", "--sweeps", "--splits"})


def expand_multi_value(argv: Sequence[str], options: frozenset[str] = MULTI_VALUE_OPTIONS) -> list[str]:
    """`argv` with each multi-value option repeated once per value."""
    out: list[str] = []
    current: str | None = None
    for word in argv:
        name, equals, inline = word.partition("=")
        if word.startswith("-"):
            current = name if name in options else None
            if current and equals:
                out += [f"{current}={value}" for value in _values(inline)]
                current = None
            elif not current:
                out.append(word)
            continue
        if current is not None:
            out += [item for value in _values(word) for item in (current, value)]
            continue
        out.append(word)
    return out


def _values(text: str) -> list[str]:
    return [value for value in (v.strip() for v in text.split(",")) if value]
