"""Rewrite one scalar of a YAML file in place, keeping every other byte (comments, order, quoting elsewhere).

``reconciler promote`` writes a version where the spec declares it: a key of ``values.yaml``
(``version_from``) or the spec's own ``version:``. Only a block-style ``key: value`` line is
rewritten; anything else is refused with the file and line, never guessed at.
"""

from __future__ import annotations

import json
import re

from reconciler.core import errors
from specs import environments as env_rules
from specs import yamlnodes


def set_scalar(text: str, path: str, value: str, *, file: str) -> str:
    """``text`` with the value at ``path`` (``checkout.version``, ``environments[1].version``) set to ``value``."""
    try:
        doc, lines = yamlnodes.load_yaml_with_lines(text, file=file)
    except errors.SpecError as exc:
        raise errors.ReconcilerError(f"{file} cannot be edited: {exc}") from exc
    found, current = _at(doc, path)
    if not found or path not in lines:
        raise errors.ReconcilerError(f"{file}: no key {path} to write the version to")
    if isinstance(current, dict | list):
        raise errors.ReconcilerError(f"{file}:{lines[path]}: {path} holds a {type(current).__name__}, not a version")
    number = lines[path]
    rows = text.splitlines(keepends=True)
    row = rows[number - 1]
    body = row.rstrip("\r\n")
    key = re.split(r"[.\[]", path)[-1]
    m = re.match(rf"^(\s*(?:-\s+)?{re.escape(key)}\s*:[ \t]*)(\"[^\"]*\"|'[^']*'|[^#\s][^#]*?)?([ \t]*(?:#.*)?)$", body)
    if m is None:
        raise errors.ReconcilerError(f"{file}:{number}: {path}: write it as one `{key}: value` line so it can be "
                                     "rewritten in place")
    rows[number - 1] = m.group(1) + json.dumps(value) + m.group(3) + row[len(body):]
    out = "".join(rows)
    _, check = _at(yamlnodes.load_yaml_with_lines(out, file=file)[0], path)
    if check != value:  # the rewrite did not land where it should: refuse rather than commit it
        raise errors.ReconcilerError(f"{file}:{number}: {path}: could not be rewritten in place")
    return out


def _at(doc: object, path: str) -> tuple[bool, object]:
    node = doc
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(node, list) or index >= len(node):
                return False, None
            node = node[index]
        else:
            found, node = env_rules.lookup(node, part) if isinstance(node, dict) else (False, None)
            if not found:
                return False, None
    return True, node
