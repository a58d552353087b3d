"""Text that prints as what it is: control characters in values become visible escapes.

A value with a newline (an image name, a file name, a message quoting a
spec) must not start a line of its own in a terminal, a log or a pull-request
comment, where it could pass for a line the product printed (a forged
``Plan: 0 to create`` line). ANSI escapes must not recolour or move the cursor.

Tag values whose key looks secret are hidden wherever tags are shown (plans, status, the
console); the status document and the renderers share this one rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["HIDDEN", "is_secret_key", "tag_view", "visible"]

_SECRET_KEY = re.compile(r"(?i)secret|passw|token|credential|private|api[_-]?key")
HIDDEN = "(hidden)"


def visible(text: str) -> str:
    """``text`` with every non-printable character (controls, bidi and zero-width format characters, line
    separators) written as its Python escape, e.g. ``\\n``, ``\\x1b``, ``\\u202e``; printable text unchanged."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def is_secret_key(key: str) -> bool:
    """A tag key such as ``db_password`` or ``API-Key``: its value is never shown."""
    return bool(_SECRET_KEY.search(key))


def tag_view(tags: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Tags as shown anywhere (plans, status, the console): values of secret-looking keys hidden."""
    return {k: HIDDEN if is_secret_key(k) else v for k, v in tags}
