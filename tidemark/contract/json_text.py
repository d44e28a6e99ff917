"""How a payload's JSON is read (schemas/README.md, "How a payload is read"): bounded nesting and
number sizes are checked *before* ``json.loads`` recurses or converts, so a poison payload is a
dead letter, never a ``RecursionError``."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from tidemark.errors import TidemarkError

# -- How a payload is read (schemas/README.md, "How a payload is read") ------------------------
JSON_WHITESPACE = " \t\n\r"
MAX_JSON_DEPTH = 64  # deepest nesting of arrays/objects accepted
MAX_NUMBER_DIGITS = 1000  # digits in one number literal (integer, fraction and exponent digits)
MAX_KEY_UTF16 = 50_000  # longest object key, in UTF-16 code units (after unescaping)
DECIMAL_MAX_DIGITS = 38  # a plain decimal literal within 38 digits/scale is exact, else a double
MAX_PAYLOAD_LIMIT = 1 << 20  # max_payload_bytes may not exceed 1 MiB (the rules are defined up to there)


# -- reading JSON -------------------------------------------------------------------------------
class Unreadable(TidemarkError, ValueError):
    """The payload is not one readable JSON value (internal: becomes truncated_json or not_json)."""


_ESCAPE = re.compile(r"\\.", re.S)
_STRING_LITERAL = re.compile(r'"[^"]*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def strip_strings(text: str) -> str:
    """``text`` without its string literals: first every backslash and the character after it is
    removed, then every ``"..."`` without a quote inside (left to right)."""
    return _STRING_LITERAL.sub("", _ESCAPE.sub("", text))


def json_depth(text: str) -> int:
    """Deepest bracket nesting of ``strip_strings(text)`` (``{``/``[`` open, ``}``/``]`` close;
    the running count's maximum). For valid JSON it is the document's nesting depth."""
    depth = deepest = 0
    for ch in _NOT_BRACKET.sub("", strip_strings(text)):
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def looks_truncated(text: str) -> bool:
    """For an unreadable payload: ``truncated_json`` (True) or ``not_json`` (False).

    Truncated when the first non-whitespace character is ``{`` or ``[`` and, in
    ``strip_strings(text)``, a ``"`` is left (a string cut off) or there are more opening
    brackets (``{``, ``[``) than closing ones (``}``, ``]``)."""
    if not text.lstrip(JSON_WHITESPACE).startswith(("{", "[")):
        return False
    s = strip_strings(text)
    return '"' in s or s.count("{") + s.count("[") > s.count("}") + s.count("]")


def _int(literal: str):
    digits = len(literal) - literal.startswith("-")
    if digits > MAX_NUMBER_DIGITS:
        raise Unreadable(f"number with more than {MAX_NUMBER_DIGITS} digits")
    if digits <= DECIMAL_MAX_DIGITS:
        return int(literal)  # a 64-bit integer or an exact DECIMAL(p,0) in Spark's variant
    return float(literal)  # the nearest double, infinite beyond ~1.8e308, like Spark's variant


def _float(literal: str):
    if sum(ch.isdigit() for ch in literal) > MAX_NUMBER_DIGITS:
        raise Unreadable(f"number with more than {MAX_NUMBER_DIGITS} digits")
    if "e" not in literal and "E" not in literal:
        exact = Decimal(literal)
        parts = exact.as_tuple()
        exponent = parts.exponent  # a letter only for NaN and infinities, which JSON numbers never are
        if isinstance(exponent, int) and -exponent <= DECIMAL_MAX_DIGITS and len(parts.digits) <= DECIMAL_MAX_DIGITS:
            return exact
    return float(literal)  # rounded to the nearest double, like Spark's variant


def _constant(name: str):
    raise Unreadable(f"{name} is not JSON")


def _object(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise Unreadable("duplicate key in an object")
    for key in obj:
        if len(key) > MAX_KEY_UTF16 // 2 and len(key.encode("utf-16-le")) // 2 > MAX_KEY_UTF16:
            raise Unreadable(f"object key longer than {MAX_KEY_UTF16} UTF-16 units")
    return obj


def _has_surrogate(doc: Any) -> bool:
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def read_json(text: str) -> Any:
    """The one JSON value in ``text``, or raise Unreadable (never anything else).

    Beyond RFC 8259 syntax (one value, only JSON whitespace around it), a payload is unreadable
    when it nests deeper than MAX_JSON_DEPTH, has a duplicate key in an object, a key longer than
    MAX_KEY_UTF16 UTF-16 units, a number literal with more than MAX_NUMBER_DIGITS digits,
    NaN/Infinity, or a ``\\u`` escape that leaves a lone surrogate. Numbers are kept the way Spark's
    VARIANT stores them: exact (int, or Decimal for a literal with a fraction) when written without
    an exponent in at most 38 digits and 38 fraction digits, otherwise the nearest double (which is
    infinite for a literal beyond ~1.8e308)."""
    try:
        if text.count("{") + text.count("[") > MAX_JSON_DEPTH and json_depth(text) > MAX_JSON_DEPTH:
            raise Unreadable(f"nested deeper than {MAX_JSON_DEPTH} levels")
        doc = json.loads(text, object_pairs_hook=_object, parse_int=_int, parse_float=_float, parse_constant=_constant)
        if "\\u" in text and _has_surrogate(doc):
            raise Unreadable("a \\u escape leaves a lone surrogate")
        return doc
    except Unreadable:
        raise
    except json.JSONDecodeError as exc:
        raise Unreadable(f"{exc.msg} at char {exc.pos}") from None
    except Exception as exc:  # noqa: BLE001 - RecursionError, MemoryError-free paths, anything else: never escape
        raise Unreadable(f"{type(exc).__name__}: {str(exc)[:100]}") from None
