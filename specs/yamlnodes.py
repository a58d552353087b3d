"""YAML to Python values plus a field-path -> line map, for ``file:line: field: message`` errors.

Only safe loading (libyaml's ``CSafeLoader`` when available); duplicate keys
are an error rather than a silent overwrite.
"""

from __future__ import annotations

from typing import Any

import yaml

from reconciler import errors

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it


def load_yaml_with_lines(text: str, *, file: str) -> tuple[Any, dict[str, int]]:
    """The document's value and ``{"clusters[0].capacity.min": 12, ...}`` (1-based lines).

    Raises ``SpecError`` for YAML syntax errors, duplicate keys and multiple documents.
    """
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise errors.SpecError(
            [errors.SpecProblem(file, line, "", f"not valid YAML: {exc.problem or exc}")]
        ) from exc
    except yaml.YAMLError as exc:
        raise errors.SpecError([errors.SpecProblem(file, 1, "", f"not valid YAML: {exc}")]) from exc
    if len(nodes) > 1:
        raise errors.SpecError([errors.SpecProblem(
            file, nodes[1].start_mark.line + 1, "", "one YAML document per file, found several")])
    if not nodes or nodes[0] is None:
        return None, {}
    lines: dict[str, int] = {}
    problems: list[errors.SpecProblem] = []
    constructor = _Loader("")  # resolves scalar tags (int, bool, null, ...) safely
    value = _build(nodes[0], "", lines, problems, constructor, file)
    if problems:
        raise errors.SpecError(problems)
    return value, lines


def _build(
    node: yaml.Node, path: str, lines: dict[str, int], problems: list[errors.SpecProblem],
    constructor: Any, file: str,
) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                problems.append(errors.SpecProblem(file, key_node.start_mark.line + 1, path,
                                                   "mapping keys must be plain scalars"))
                continue
            child = f"{path}.{key}" if path else str(key)
            if key in out:
                problems.append(errors.SpecProblem(
                    file, key_node.start_mark.line + 1, child,
                    f"duplicate key (first at line {lines.get(child, '?')})"))
                continue
            lines[child] = key_node.start_mark.line + 1
            out[key] = _build(value_node, child, lines, problems, constructor, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            items.append(_build(item, f"{path}[{i}]", lines, problems, constructor, file))
        return items
    return constructor.construct_object(node, deep=True)


def line_of(lines: dict[str, int], path: str) -> int:
    """The line of ``path`` or of its nearest ancestor that has one."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return lines.get("", 1)
