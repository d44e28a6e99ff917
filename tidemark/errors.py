"""The one base of Tidemark's exceptions.

A ``TidemarkError`` is an error the user can act on: its text is the message they should read
(what went wrong and, where there is one, what to do next), so ``tidemark.cli.main`` reports any
of them once, on stderr, with exit code 1. Every exception class Tidemark defines derives from it
(and keeps the built-in base it had, so ``except ValueError`` and the like still catch it).
Anything else escaping the CLI is a bug and keeps its traceback.
"""

from __future__ import annotations


class TidemarkError(Exception):
    """An error whose text is the message the user should read."""

    @property
    def message(self) -> str:
        return str(self)
