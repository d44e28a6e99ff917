"""One error base: every exception class Tidemark defines is a ``TidemarkError``, and the CLI reports
one once (its message on stderr, exit code 1) wherever in a command it was raised."""

from __future__ import annotations

import ast
import builtins

from tidemark import cli
from tidemark.config import PROJECT_ROOT
from tidemark.errors import TidemarkError

BUILTIN_EXCEPTIONS = {
    name for name, obj in vars(builtins).items() if isinstance(obj, type) and issubclass(obj, BaseException)
}


def _classes() -> dict[str, tuple[str, list[str]]]:
    """Every module-level class under tidemark/: name -> (where, the names of its bases)."""
    found = {}
    for path in sorted((PROJECT_ROOT / "tidemark").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                bases = [b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases]
                found[node.name] = (f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}", bases)
    return found


def test_every_exception_class_derives_from_tidemark_error():
    classes = _classes()

    def is_exception(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name in BUILTIN_EXCEPTIONS or name == "TidemarkError":
            return True
        if name not in classes or name in seen:
            return False
        return any(is_exception(base, seen | {name}) for base in classes[name][1])

    def is_ours(name: str) -> bool:
        return name == "TidemarkError" or (name in classes and any(is_ours(b) for b in classes[name][1]))

    exceptions = [name for name in classes if name != "TidemarkError" and is_exception(name)]
    assert len(exceptions) > 20  # the walk sees them (27 when this was written)
    outside = [f"{classes[name][0]} {name}" for name in exceptions if not is_ours(name)]
    assert not outside, "exception classes that are not TidemarkErrors:\n" + "\n".join(outside)


def test_the_cli_reports_a_tidemark_error_once_with_exit_code_1(capsys):
    # `keys create` without --tenant fails before it connects to anything
    assert cli.main(["keys", "create"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", "tidemark keys create: --tenant is required\n")


def test_the_message_is_the_text():
    assert TidemarkError("start Airflow first").message == "start Airflow first"
