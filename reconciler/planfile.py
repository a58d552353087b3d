"""Saved plans: what ``plan --out`` writes and ``apply --plan`` reads back as the exact same ``model.Plan``.

A saved plan is the DESIGN §5 JSON (for people and tools) plus, under ``plan``, every model value the
plan was made of: each change's full desired ``ClusterSpec`` and current ``ServerGroup``, its steps and
verdicts. ``apply --plan`` therefore runs exactly the reviewed steps, and compares the plan's commit and
live fingerprint with the present before it does (Terraform's stale-plan rule).

Because it must rebuild the exact launch settings, a saved plan holds user data and tag values in full,
unlike every rendered form: keep it where CI secrets are kept. ``digest`` covers the whole document and
``plan_id`` is recomputed from the content, so edited or damaged files are refused, naming the key.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import io
import json
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

import msgspec

from reconciler import render
from reconciler.core import errors, jsontext, model
from reconciler.core.resources import ResourceChange, ResourceSpec

if TYPE_CHECKING:
    from reconciler.runtime import pipeline

FORMAT_VERSION = 1

_FIELD_TYPES: dict[tuple[type, str], Any] = {
    # ``Plan.problems`` is typed loosely to keep model.py free of errors.py; in a plan they are SpecProblems.
    (model.Plan, "problems"): tuple[errors.SpecProblem, ...],
    (model.Plan, "notices"): tuple[errors.SpecProblem, ...],
    (model.Plan, "resource_changes"): tuple[ResourceChange, ...],
}


def dump_plan(plan: model.Plan, *, held: Any = (), skipped: Any = (),
              rendered: dict[str, Any] | None = None) -> str:
    """The plan as a saved-plan document (sorted keys, stable bytes for the same plan).

    ``rendered`` is ``render.render_json`` of the same plan, held and skipped when the caller has
    it already: the contract part is then not built again.
    """
    out = io.BytesIO()
    write_plan(out, plan, held=held, skipped=skipped, rendered=rendered)
    return out.getvalue().decode()


_DIGEST_PLACEHOLDER = '"sha256:' + "0" * 64 + '"'


def write_plan(out: BinaryIO, plan: model.Plan, *, held: Any = (), skipped: Any = (),
               rendered: dict[str, Any] | None = None,
               show: tuple[dict[str, Any], Callable[[str], object]] | None = None) -> None:
    """``dump_plan``'s bytes written to a seekable ``out`` piece by piece, in one pass.

    Nothing of the document is held whole (a fleet's saved plan is tens of megabytes of text): each
    change is encoded, hashed (its compact text) and written (its indented text) in turn, and the
    digest, a fixed-width value, is written over its placeholder at the end.

    ``show`` is the plan JSON (``render.render_json(..., lazy=True)``) and where to write it: it is
    written in the same pass, exactly as ``jsontext.write_pretty`` would write it (without the final
    newline). Its keys are among the saved plan's, sorted alike and at the same level, so a list both
    make of the same items with the same function (the changes above all) is built and encoded once and
    its text written to both (``jsontext.ascii_text`` makes the plan JSON's escapes of it).
    """
    doc = dict(rendered) if rendered is not None else render.render_json(plan, held=held, skipped=skipped,
                                                                         lazy=True)
    doc["format_version"] = FORMAT_VERSION
    doc["plan"] = _encode_top(plan)
    doc["digest"] = None
    shown, show_write = show if show is not None else ({}, None)
    if not set(shown) <= set(doc):
        raise ValueError(f"not keys of a saved plan: {sorted(set(shown) - set(doc))}")
    saved = jsontext.Batched(out.write, bytes_=True)
    shown_out = jsontext.Batched(show_write) if show_write is not None else None
    digest = hashlib.sha256()
    at = -1
    hashed = False
    for n, key in enumerate(sorted(doc)):
        name = json.dumps(key, ensure_ascii=False)
        saved.add(("," if n else "{") + "\n  " + name + ": ")
        tee = None
        if shown_out is not None and key in shown:
            shown_out.add(("," if shown_out.opened else "{") + "\n  " + json.dumps(key) + ": ")
            shown_out.opened = True
            if _same_items(shown[key], doc[key]):
                tee = shown_out
            else:
                for _, text in jsontext.pieces(shown[key], 1, ensure_ascii=True, allow_nan=True):
                    shown_out.add(text)
        if key == "digest":  # the digest covers the document without itself
            saved.flush()
            at = out.tell()
            saved.add(_DIGEST_PLACEHOLDER)
            continue
        digest.update((("," if hashed else "{") + name + ":").encode())
        hashed = True
        # depth 2: the model part (``plan``) is walked to its changes, each of which is one piece
        for compact_text, pretty_text in jsontext.pieces(doc[key], 1, ensure_ascii=False, allow_nan=False,
                                                         depth=2):
            digest.update(compact_text.encode())
            saved.add(pretty_text)
            if tee is not None:
                tee.add(jsontext.ascii_text(pretty_text))
    digest.update(b"}")
    saved.add("\n}\n")
    saved.flush()
    if shown_out is not None:
        shown_out.add("\n}" if shown_out.opened else "{}")
        shown_out.flush()
    end = out.tell()
    out.seek(at)
    out.write(json.dumps("sha256:" + digest.hexdigest()).encode())
    out.seek(end)


def _same_items(a: Any, b: Any) -> bool:
    """Whether two values of the documents are one list made of the same items by the same function."""
    return (type(a) is jsontext.Items and type(b) is jsontext.Items and a.fn is b.fn
            and a.source is b.source)


def _encode_top(plan: model.Plan) -> dict[str, Any]:
    """``_encode(plan)`` with its sequences (changes above all) encoded as they are written."""
    names = _INIT_FIELDS.get(model.Plan) or _INIT_FIELDS.setdefault(
        model.Plan, tuple(f.name for f in dataclasses.fields(model.Plan) if f.init))
    top: dict[str, Any] = {}
    for name in names:
        value = getattr(plan, name)
        fast = _FAST.get(name)
        top[name] = jsontext.Items(fast or _encode, value) if type(value) is tuple else _encode(value)
    return top


def _change_builtins(change: model.Change) -> Any:
    """``_encode(change)`` in C (msgspec; tuples stay tuples, which JSON writes as lists), less the id cache."""
    out = msgspec.to_builtins(change)
    del out["_id"], out["_content_id"]
    return out


def _resource_builtins(change: ResourceChange) -> Any:
    out = msgspec.to_builtins(change)
    del out["_id"], out["_content_id"]
    if out["desired"] is not None:
        del out["desired"]["_hash"], out["desired"]["_lines"]
    return out


PRIVATE_FIELDS = {model.Change: ("_id", "_content_id"), ResourceChange: ("_id", "_content_id"),
                  ResourceSpec: ("_hash", "_lines")}
"""The only fields no constructor takes among the values a change holds: what the C encoder's output
drops (a test walks the types and fails when another appears)."""
_FAST: dict[str, Any] = {"changes": _change_builtins, "resource_changes": _resource_builtins}


def load_plan(text: str, *, file: str) -> model.Plan:
    """The ``model.Plan`` that ``dump_plan`` wrote; ``ReconcilerError`` naming ``file`` and the key otherwise."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.ReconcilerError(f"{file}:{exc.lineno}: not a saved plan (invalid JSON: {exc.msg})") from exc
    except RecursionError:
        raise errors.ReconcilerError(f"{file}: not a saved plan (JSON nested too deeply)") from None
    if not isinstance(doc, dict):
        raise errors.ReconcilerError(f"{file}: not a saved plan (expected a JSON object)")
    for key in ("format_version", "plan_id", "plan", "digest"):
        if key not in doc:
            raise errors.ReconcilerError(
                f"{file}: not a saved plan (no {key!r}); write one with `reconciler plan --format json --out FILE`"
            )
    if doc["format_version"] != FORMAT_VERSION:
        raise errors.ReconcilerError(
            f"{file}: format_version: saved plan format {doc['format_version']!r} is not supported "
            f"(this reconciler reads format {FORMAT_VERSION}); plan again"
        )
    body = {k: v for k, v in doc.items() if k != "digest"}
    if doc["digest"] != _digest(body):
        raise errors.ReconcilerError(
            f"{file}: digest: the saved plan was edited or damaged since it was written; plan again"
        )
    try:
        plan: model.Plan = _decode(doc["plan"], model.Plan, "plan")
    except _Malformed as exc:
        raise errors.ReconcilerError(f"{file}: {exc.path}: {exc.problem}") from None
    if plan.plan_id != doc["plan_id"]:
        raise errors.ReconcilerError(
            f"{file}: plan_id: {doc['plan_id']!r} does not match the plan's content ({plan.plan_id}); "
            "the saved plan was altered; plan again"
        )
    for key in ("commit", "base_commit", "live_fingerprint"):
        if doc.get(key) != getattr(plan, key):
            raise errors.ReconcilerError(f"{file}: {key}: does not match plan.{key}; the saved plan was altered")
    return plan


# ---------------------------------------------------------------------------- codec


class _Malformed(Exception):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclasses.dataclass(frozen=True, slots=True)
class Verifier:
    """The stale-plan rule of ``apply --plan``, as the checks of a pipeline ``Gate``: the saved plan runs
    only if the branch head is its commit and planning now gives the same live fingerprint and plan id."""

    saved: model.Plan
    file: str
    branch: str

    def source(self, commit: str | None, error: str | None) -> None:
        if error:
            raise errors.PlanRefused(f"{self.file}: cannot check the branch head: {error}")
        if commit != self.saved.commit:
            raise errors.PlanRefused(
                f"{self.file}: the plan is for commit {self.saved.commit[:8]} but {self.branch} is now at "
                f"{(commit or '?')[:8]}; run `reconciler plan` again"
            )

    def proceed(self, ev: pipeline.Evaluation) -> bool:
        saved, plan = self.saved, ev.plan
        if plan.live_fingerprint != saved.live_fingerprint:
            raise errors.PlanRefused(
                f"{self.file}: live state changed since the plan was made "
                f"(fingerprint {saved.live_fingerprint} -> {plan.live_fingerprint}); run `reconciler plan` again"
            )
        if plan.plan_id != saved.plan_id:
            raise errors.PlanRefused(
                f"{self.file}: the plan would now be {plan.plan_id}, not {saved.plan_id}; run `reconciler plan` again"
            )
        return True


def _digest(doc: dict[str, Any]) -> str:
    canonical = jsontext.compact(doc, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


_PLAIN = frozenset({str, int, float, bool, type(None)})
_INIT_FIELDS: dict[type, tuple[str, ...]] = {}


def _encode(value: Any) -> Any:
    """Model values as plain JSON: dataclasses by constructor field, enums by value, tuples as lists.

    Dispatches on the exact type, with each dataclass's constructor fields looked up once: a fleet's
    plan is a quarter of a million values, and ``dataclasses.fields`` per value cost more than the rest.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is tuple or kind is list:
        return [_encode(v) for v in value]
    names = _INIT_FIELDS.get(kind)
    if names is None and dataclasses.is_dataclass(kind):
        names = _INIT_FIELDS.setdefault(kind, tuple(f.name for f in dataclasses.fields(kind) if f.init))
    if names is not None:
        return {name: _encode(getattr(value, name)) for name in names}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, str | int | float):
        return value
    raise TypeError(f"cannot save a {kind.__name__} in a plan")


def _decode(value: Any, hint: Any, path: str) -> Any:
    """Rebuild a value of type ``hint``; ints stay ints where floats are allowed so hashes do not move."""
    origin = typing.get_origin(hint)
    if origin is types.UnionType or origin is typing.Union:
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _decode(value, inner, path)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list):
            raise _Malformed(path, f"expected a list, got {_kind(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _Malformed(path, f"expected {len(args)} items, got {len(value)}")
        return tuple(_decode(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in hint)
            raise _Malformed(path, f"{value!r} is not one of {allowed}") from None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _decode_dataclass(value, hint, path)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"{path}: no decoder for {hint!r}")
    raise _Malformed(path, f"expected {hint.__name__}, got {_kind(value)}")


def _decode_dataclass(value: Any, cls: type, path: str) -> Any:
    if not isinstance(value, dict):
        raise _Malformed(path, f"expected an object, got {_kind(value)}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]  # not caches such as Change._id
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise _Malformed(f"{path}.{unknown[0]}", "unknown key")
    kwargs = {}
    optional = {f.name for f in dataclasses.fields(cls)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    for name in names:
        if name not in value:
            if name in optional:  # a field added since the plan was saved
                continue
            raise _Malformed(f"{path}.{name}", "missing")
        kwargs[name] = _decode(value[name], _FIELD_TYPES.get((cls, name), hints[name]), f"{path}.{name}")
    return cls(**kwargs)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
