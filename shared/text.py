"""Checks on a decoded JSON document before any field of it is read (pure): depth and storable text.

Nesting is bounded explicitly: how deep `json.loads` can go depends on the interpreter's recursion
limit, which test tools and runtimes change. A NUL byte is refused by PostgreSQL's text type; an
unpaired surrogate (JSON's "\\ud800") cannot be encoded as UTF-8 at all. Either one reaching a
statement fails it, and with pg8000 the failure can leave the pooled connection unusable. Every
boundary refuses both before anything is stored.
"""

from __future__ import annotations

from typing import Any

# No message or request body of this platform nests deeper than a few levels.
MAX_NESTING = 32


def too_deep(document: Any, limit: int = MAX_NESTING) -> bool:
    """True when lists and objects in `document` nest deeper than `limit`."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return False


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None."""
    if "\x00" in text:
        return "contains a NUL byte"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate"
    return None


def unstorable_text(document: Any, path: str = "") -> tuple[str, str] | None:
    """The first key or string in `document` that cannot be stored, as (its path, why), or None."""
    stack: list[tuple[str, Any]] = [(path, document)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                return where or "value", problem
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = text_problem(key)
                if problem:
                    return where or "document", f"has a key that {problem}"
                stack.append((f"{where}.{key}" if where else key, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{index}]", item) for index, item in enumerate(value))
    return None
