"""JSON that every parser reads: never NaN or Infinity, which Python's json writes by default.

A non-finite number in a stored event or an API answer makes the whole document unreadable to a
strict parser (a browser's JSON.parse included). `dumps` encodes with allow_nan=False; should a
non-finite number still get this far, it becomes null, is counted in `replaced`, and one line a
minute says where it came from.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from .logsafe import ThrottledLog

log = logging.getLogger(__name__)

_NONFINITE = "Out of range float values"  # json's ValueError for NaN and infinities under allow_nan=False
_throttled = ThrottledLog(log, interval_s=60.0)
replaced = 0  # documents in which a non-finite number was replaced by null, since start


def finite(value: Any) -> Any:
    """`value` with every NaN and infinity (in dicts, lists and tuples, however nested) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, where: str, **kwargs: Any) -> str:
    """json.dumps with allow_nan=False; a non-finite number becomes null (counted, logged by `where`)."""
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except ValueError as exc:
        if _NONFINITE not in str(exc):
            raise
    _count(where)
    return json.dumps(finite(value), allow_nan=False, **kwargs)


def _count(where: str) -> None:
    global replaced
    replaced += 1
    _throttled.warning("nonfinite", "a non-finite number in %s was written as null (%d documents so far)", where, replaced)


def strict_body(body: bytes, where: str) -> bytes | None:
    """A JSON document's bytes re-encoded without NaN or Infinity, or None when it has none (or is not JSON)."""
    if b"NaN" not in body and b"Infinity" not in body:  # the common case: nothing to parse
        return None
    found = []

    def constant(name: str) -> None:
        found.append(name)
        return None

    try:
        value = json.loads(body, parse_constant=constant)
    except (ValueError, RecursionError):
        return None
    if not found:  # the letters were inside strings
        return None
    _count(where)
    return json.dumps(value, allow_nan=False).encode()
