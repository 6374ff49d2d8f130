"""Exceptions the core raises when it finds a bug in itself (never for bad input: bad input gets a
`Rejected` event). Kept in their own module: mypyc compiles the rest of the core to native classes,
and exception classes must stay ordinary Python classes."""

from __future__ import annotations


class InvariantViolation(AssertionError):
    """The core found its own state inconsistent. Never caught inside the core: stop the world."""


class IllegalTransition(RuntimeError):
    """An order was asked to make a lifecycle transition its table does not allow."""
