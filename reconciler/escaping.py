"""Text that prints as what it is: control characters in values become visible escapes.

A value with a newline (an image name, a file name, a message quoting a
spec) must not start a line of its own in a terminal, a log or a pull-request
comment, where it could pass for a line the product printed (a forged
``Plan: 0 to create`` line). ANSI escapes must not recolour or move the cursor.
"""

from __future__ import annotations

__all__ = ["visible"]


def visible(text: str) -> str:
    """``text`` with every non-printable character (controls, bidi and zero-width format characters, line
    separators) written as its Python escape, e.g. ``\\n``, ``\\x1b``, ``\\u202e``; printable text unchanged."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
