"""Errors of the catalog: bad contract files and bad symbols."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule in one contract file: where it is (file and field path) and what is wrong."""

    file: str   # the file as the loader was given it, e.g. "contracts/generations.toml"
    field: str  # path inside the file, e.g. "generation[5] (Rubin).listed"; "" for the whole file
    rule: str   # the rule broken, e.g. "a generation cannot be listed without a dense BF16 peak"

    def __str__(self) -> str:
        if not self.field:
            return f"{self.file}: {self.rule}"
        return f"{self.file}: {self.field}: {self.rule}"


class CatalogError(ValueError):
    """The contract files are unreadable or break a rule; the message lists every problem found.

    One problem per line, each naming the file, the field path and the rule, e.g.
    `contracts/generations.toml: generation[5] (Rubin).listed: a generation cannot be listed without
    a dense BF16 peak (peak_tflops)`.
    """

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("a CatalogError needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def __reduce__(self) -> tuple[type[CatalogError], tuple[list[Problem]]]:
        # Exceptions pickle as cls(*args); args here is the message, not the problems.
        return (CatalogError, (list(self.problems),))

    @property
    def file(self) -> str:
        """File of the first problem."""
        return self.problems[0].file

    @property
    def field(self) -> str:
        """Field path of the first problem."""
        return self.problems[0].field

    @property
    def rule(self) -> str:
        """Rule broken by the first problem."""
        return self.problems[0].rule


class SymbolError(ValueError):
    """A series symbol that is malformed, or names no listed product."""
