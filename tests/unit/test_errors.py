"""One error base: every exception class Tidemark defines is a ``TidemarkError``, and the CLI reports
one once (its message on stderr, exit code 1) wherever in a command it was raised."""

from __future__ import annotations

import ast
import builtins

from tidemark import cli
from tidemark.config import PROJECT_ROOT
from tidemark.errors import TidemarkError

BUILTINS = {name for name, obj in vars(builtins).items() if isinstance(obj, type) and issubclass(obj, BaseException)}


def _classes() -> list[tuple[str, str, list[str]]]:
    """Every module-level class under tidemark/: (where, name, the names of its bases)."""
    found = []
    for path in sorted((PROJECT_ROOT / "tidemark").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                bases = [b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases]
                found.append((f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}", node.name, bases))
    return found


def test_every_exception_class_derives_from_tidemark_error():
    classes = _classes()
    bases_of: dict[str, list[str]] = {}
    for _where, name, bases in classes:  # by name, as a base is written (two classes of one name: both)
        bases_of.setdefault(name, []).extend(bases)

    def reaches(name: str, roots: set[str], seen: frozenset[str] = frozenset()) -> bool:
        if name in roots:
            return True
        return name not in seen and any(reaches(base, roots, seen | {name}) for base in bases_of.get(name, []))

    exceptions = [(where, name) for where, name, _ in classes if name != "TidemarkError" and reaches(name, BUILTINS)]
    assert len(exceptions) > 20  # the walk sees them (28 when this was written)
    outside = [f"{where} {name}" for where, name in exceptions if not reaches(name, {"TidemarkError"})]
    assert not outside, "exception classes that are not TidemarkErrors:\n" + "\n".join(outside)


def test_the_cli_reports_a_tidemark_error_once_with_exit_code_1(capsys):
    # `keys create` without --tenant fails before it connects to anything
    assert cli.main(["keys", "create"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", "tidemark keys create: --tenant is required\n")


def test_the_message_is_the_text():
    assert TidemarkError("start Airflow first").message == "start Airflow first"
