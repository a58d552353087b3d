"""Plans for people and tools: text for terminals, the DESIGN §5 JSON contract, Markdown for pull requests.

Pure functions of ``model.Plan`` values (no I/O, no clock) so the CLI, the daemon and the tests render
identically. Secrets never leave this package: user data appears only as a hash (JSON) or as "hidden"
(text, Markdown), and the values of tags whose key looks secret are hidden everywhere.

One module per output format (``text``, ``markdown``, ``json``), what they share in ``common``; a new
format is a module here and a ``--format`` choice in ``cli``. Callers use the names below, from
``reconciler.render``.
"""

from reconciler.render.common import (
    LAST_CAPACITY,
    FieldChange,
    after_line,
    diff_lines,
    field_diff,
    is_last_capacity,
    strategy_line,
    summary,
    summary_line,
)
from reconciler.render.json import render_json
from reconciler.render.markdown import MARKER, MARKS, notes_markdown, render_markdown
from reconciler.render.text import render_problems, render_text

__all__ = ["LAST_CAPACITY", "MARKER", "MARKS", "FieldChange", "after_line", "diff_lines", "field_diff",
           "is_last_capacity", "notes_markdown", "render_json", "render_markdown", "render_problems", "render_text",
           "strategy_line", "summary", "summary_line"]
