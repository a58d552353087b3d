"""YAML to Python values plus a field-path -> line map, for ``file:line: field: message`` errors.

Only safe loading (libyaml's ``CSafeLoader`` when available, else the pure
Python ``SafeLoader``). We compose nodes ourselves instead of calling
``safe_load`` because node marks carry the line of every key and value, and
because PyYAML silently keeps the last of two equal keys, which hides typos
in review: a duplicate key is an error here. Merge keys (``<<: *defaults``)
work as in PyYAML, keys written next to a merge override the merged ones.
Alias expansion is bounded so a "billion laughs" document fails fast, and
nesting is bounded (``MAX_DEPTH``) so no document can exhaust the stack of
this walk, of the validator or of anything downstream.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from reconciler.core import errors
from specs import limits as limits_mod

__all__ = ["MAX_DEPTH", "MAX_NODES", "line_of", "load_yaml_with_lines"]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it

MAX_NODES = 100_000
"""Most values one document may expand to (aliases count each time they are used); a spec has about 50."""
MAX_DEPTH = limits_mod.MAX_DEPTH

_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class _TooBig(Exception):
    """Raised inside the tree walk when aliases expand past ``MAX_NODES``."""


class _TooDeep(Exception):
    """Raised inside the tree walk past ``MAX_DEPTH`` levels; carries the line."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def load_yaml_with_lines(text: str, *, file: str) -> tuple[Any, dict[str, int]]:
    """The document's value and ``{"clusters[0].capacity.min": 12, ...}`` (1-based lines).

    The root is at path ``""``; mapping keys join with ``.``, list items with
    ``[i]``. A path's line is the line of its key (for mapping entries) or of
    its value (list items). Raises ``SpecError`` for YAML syntax errors,
    unknown or unsafe tags, duplicate keys, non-scalar keys, several
    documents in one file, nesting deeper than ``MAX_DEPTH`` and runaway
    alias expansion; every problem found in the tree is reported, not only
    the first.
    """
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except RecursionError as exc:  # only the pure-Python composer recurses; libyaml stops at 1,000 levels
        raise errors.SpecError([errors.SpecProblem(
            file, 1, "", f"nested more than {MAX_DEPTH} levels deep")]) from exc
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
    walk = _Walk(file)
    try:
        value = walk.build(nodes[0], "", 0)
    except _TooBig as exc:
        raise errors.SpecError([errors.SpecProblem(
            file, 1, "", f"the document expands to more than {MAX_NODES:,} values (aliases?)")]) from exc
    except _TooDeep as exc:
        raise errors.SpecError([errors.SpecProblem(
            file, exc.line, "", f"nested more than {MAX_DEPTH} levels deep (lists and mappings inside "
                                "each other); a spec needs a handful")]) from exc
    if walk.problems:
        raise errors.SpecError(walk.problems)
    return value, walk.lines


_STR_TAG = "tag:yaml.org,2002:str"
"""Most scalars of a spec: names, images, durations (the composer resolved their tag already)."""


class _Walk:
    """One document's tree walk: values, the line map and problems found on the way."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[str, int] = {}
        self.problems: list[errors.SpecProblem] = []
        self.budget = MAX_NODES
        self.constructor = _Loader("")  # resolves scalar tags (int, bool, null, ...) safely

    def problem(self, node: yaml.Node, path: str, message: str) -> None:
        self.problems.append(errors.SpecProblem(self.file, node.start_mark.line + 1, path, message))

    def scalar(self, node: yaml.Node, path: str) -> Any:
        if node.tag == _STR_TAG and type(node) is yaml.ScalarNode:
            return node.value  # what SafeConstructor.construct_yaml_str answers, without its bookkeeping
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:  # e.g. !!python/object: not constructible by a safe loader
            problem = getattr(exc, "problem", None) or str(exc)
            self.problem(node, path, f"not allowed in a spec: {problem}")
            return None
        if type(value) is float and not math.isfinite(value):
            # .nan passes every bound (each comparison with it is false) and .inf every lower one: a canary
            # score of .nan would pass validation, then judge nothing and break the saved plan
            self.problem(node, path, f"{node.value} is not a finite number (quote it if it is text)")
            return None
        return value

    def build(self, node: yaml.Node, path: str, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _TooBig
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.CollectionNode):
            if depth >= MAX_DEPTH:
                raise _TooDeep(node.start_mark.line + 1)
            if node.tag not in _PLAIN_TAGS:
                self.problem(node, path, f"not allowed in a spec: the tag {node.tag!r} (only plain YAML)")
                return None
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node.value)]
        return self.scalar(node, path)

    def mapping(self, node: yaml.MappingNode, path: str, depth: int) -> dict[Any, Any]:
        if depth >= MAX_DEPTH:
            raise _TooDeep(node.start_mark.line + 1)
        out: dict[Any, Any] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = self.scalar(key_node, path)
            if isinstance(key_node, yaml.CollectionNode) or not (
                    key is None or isinstance(key, str | int | float | bool)):
                self.problem(key_node, path, "mapping keys must be plain scalars")
                continue
            child = f"{path}.{key}" if path else str(key)
            if key in out:
                self.problem(key_node, child, f"duplicate key (first at line {self.lines.get(child, '?')})")
                continue
            self.lines[child] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, child, depth + 1)
        for merge in merges:
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in sources:  # earlier sources win, as in PyYAML
                if not isinstance(source, yaml.MappingNode):
                    self.problem(source, path, "a merge key (<<) needs a mapping or a list of mappings")
                    continue
                outer, self.lines = self.lines, {}
                try:
                    merged = self.mapping(source, path, depth + 1)  # merge chains nest too
                    merged_lines = self.lines
                finally:
                    self.lines = outer
                for key, value in merged.items():
                    if key in out:
                        continue
                    out[key] = value
                    child = f"{path}.{key}" if path else str(key)
                    self.lines.update({p: n for p, n in merged_lines.items()
                                       if p == child or p.startswith((f"{child}.", f"{child}["))})
        return out


def line_of(lines: dict[str, int], path: str) -> int:
    """The line of ``path`` or of its nearest ancestor that has one (1 when none has)."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return lines.get("", 1)
