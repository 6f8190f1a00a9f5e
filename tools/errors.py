"""Errors users see as one line: the file (and row or record) and the problem."""

from __future__ import annotations


class InputError(Exception):
    """Bad input: a missing file, a corrupt record, a missing column...

    `str(error)` is the one line the CLI prints: ``FILE[:WHERE]: PROBLEM``.
    """

    def __init__(self, source: str, problem: str, where: str | None = None) -> None:
        self.source = str(source)
        self.where = " ".join(str(where).split()) if where is not None else None  # one line, whatever the input held
        self.problem = " ".join(str(problem).split())
        super().__init__(self.line)

    @property
    def line(self) -> str:
        location = f"{self.source}:{self.where}" if self.where else self.source
        return f"{location}: {self.problem}"


class ConfigError(Exception):
    """A configuration that cannot work (empty store, unknown backend...): one line."""


def describe(exc: BaseException) -> str:
    """One line for any validation problem (pydantic errors span many lines: keep three)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}" for err in exc.errors()[:3]
        )
    return " ".join(str(exc).split())
