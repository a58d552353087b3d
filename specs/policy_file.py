"""``policies.yaml`` at the spec root: guardrail settings reviewed in pull requests like the specs.

Settings are layered; the most specific wins, key by key:
built-in defaults < ``defaults`` < ``criticality.<level>`` < ``applications.<app>`` < ``clusters.<cluster>``.
Validated with cerberus; every problem is reported as ``file:line: field.path: message``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.core import errors
from reconciler.notifications import kinds as notify_kinds
from specs import schema as schema_mod
from specs import yamlnodes

MAX_ITEMS = 20_000
"""Most entries in one mapping or list (``clusters:`` may name every cluster of a large fleet)."""
_FROM = r"^([01]\d|2[0-3]):[0-5]\d$"
_TIME = _FROM + r"|^24:00$"
_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DURATION = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"

_WINDOW = {"type": "dict", "schema": {
    "days": {"type": "list", "schema": {"type": "string", "allowed": _DAYS}},
    "from": {"type": "string", "regex": _FROM, "required": True},
    "to": {"type": "string", "regex": _TIME, "required": True},
    "timezone": {"type": "string", "empty": False},
}}

RULES: dict[str, Any] = {
    "mass_deletion": {"type": "dict", "schema": {"max_share": {"type": "float", "coerce": float, "min": 0, "max": 1}}},
    "blast_radius": {"type": "dict", "schema": {"max_clusters": {"type": "integer", "min": 1}}},
    "production_accounts": {"type": "list", "schema": {"type": "string"}},
    "protected_accounts": {"type": "list", "schema": {"type": "string"}},
    "require_approval": {"type": "string", "allowed": ["never", "production", "always"]},
    "allowed_images": {"type": "dict", "valuesrules": {"type": "list", "schema": {"type": "string"}}},
    "allowed_instance_types": {"type": "dict", "valuesrules": {"type": "list", "schema": {"type": "string"}}},
    "windows": {"type": "dict", "schema": {
        "timezone": {"type": "string", "empty": False},
        "allow": {"type": "list", "schema": _WINDOW},
        "deny": {"type": "list", "schema": _WINDOW},
    }},
    "waves": {"type": "dict", "schema": {
        "max_regions_per_wave": {"type": "integer", "min": 0},
        "first_wave_size": {"type": "integer", "min": 0},
        "min_pause": {"type": ["string", "integer"], "regex": _DURATION},
    }},
    "capacity": {"type": "dict", "schema": {"min_serving": {"type": "integer", "min": 0}}},
    "resources": {"type": "dict", "schema": {"narrowed_ingress": {"type": "string",
                                                                  "allowed": ["approve", "warn", "deny"]}}},
    "signed_commits": {"type": "dict", "schema": {"required": {"type": "boolean"}}},
    "freeze": {"type": "dict", "nullable": True, "schema": {"reason": {"type": "string", "required": True},
                                                             "by": {"type": "string"}}},
    # which events go to which notification targets (names from the config's notifications.targets)
    "notify": {"type": "list", "schema": {"type": "dict", "schema": {
        "targets": {"type": "list", "required": True, "minlength": 1, "schema": {"type": "string", "empty": False}},
        "events": {"type": "list", "minlength": 1,
                   "schema": {"type": "string", "allowed": [*notify_kinds.KINDS, notify_kinds.ALL]}},
    }}},
}

SCHEMA: dict[str, Any] = {
    "freeze": RULES["freeze"],  # shorthand for defaults.freeze: the one line a release manager commits
    "defaults": {"type": "dict", "schema": RULES},
    "criticality": {"type": "dict", "keysrules": {"type": "string", "allowed": ["low", "normal", "critical"]},
                    "valuesrules": {"type": "dict", "schema": RULES}},
    "applications": {"type": "dict", "valuesrules": {"type": "dict", "schema": RULES}},
    "clusters": {"type": "dict", "valuesrules": {"type": "dict", "schema": RULES}},
}

BUILTIN: dict[str, Any] = {
    "mass_deletion": {"max_share": 0.5},
    "blast_radius": {"max_clusters": 50},
    "production_accounts": ["prod*", "production*"],
    "protected_accounts": [],
    "require_approval": "never",
    "allowed_images": {},
    "allowed_instance_types": {},
    "windows": {},
    "waves": {"max_regions_per_wave": 0, "first_wave_size": 1, "min_pause": "0s"},
    "capacity": {"min_serving": 1},
    "resources": {"narrowed_ingress": "approve"},
    "signed_commits": {"required": False},
    "freeze": None,
    "notify": [{"targets": [notify_kinds.ALL], "events": [notify_kinds.ALL]}],
}

CRITICALITY_DEFAULTS: dict[str, dict[str, Any]] = {
    "low": {"waves": {"first_wave_size": 0}},
    "normal": {},
    "critical": {"require_approval": "production", "waves": {"max_regions_per_wave": 1, "first_wave_size": 1}},
}


@dataclass(frozen=True)
class PolicySettings:
    """The parsed file; ``for_cluster`` resolves the layers for one change.

    A file with problems yields the built-in layers plus its ``problems``: the
    ``policy-file`` rule then holds every change but rollbacks, because a
    misspelt freeze or protected account must not quietly loosen the guardrails.
    """

    defaults: Mapping[str, Any] = field(default_factory=dict)
    criticality: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    applications: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    clusters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    file: str = ""
    problems: tuple[errors.SpecProblem, ...] = ()
    _memo: dict[tuple[str | None, str | None, str], dict[str, Any]] = field(default_factory=dict, compare=False,
                                                                          repr=False)

    def digest_view(self) -> tuple[Any, ...]:
        """What ``reconciler.core.memo.digest`` names it by: the file's layers and problems, not ``_memo``,
        which grows as layers are resolved and so would make equal settings differ between runs."""
        return (self.defaults, self.criticality, self.applications, self.clusters, self.file, self.problems)

    def for_cluster(self, application: str, cluster: str, criticality: str) -> dict[str, Any]:
        """Resolved once per layer that applies; callers must not mutate the result.

        An application or cluster without a layer of its own is keyed as None, so every cluster that only
        the defaults and its criticality speak for shares one dict (one per cluster and resource was 28,000
        equal dicts, 6 MB, at 10,000 clusters)."""
        key = (application if application in self.applications else None,
               cluster if cluster in self.clusters else None, criticality)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._resolve(application, cluster, criticality)
        return hit

    def _resolve(self, application: str, cluster: str, criticality: str) -> dict[str, Any]:
        out = _merge(BUILTIN, self.defaults)
        out = _merge(out, CRITICALITY_DEFAULTS.get(criticality, {}))
        out = _merge(out, self.criticality.get(criticality, {}))
        out = _merge(out, self.applications.get(application, {}))
        return _merge(out, self.clusters.get(cluster, {}))

    def global_settings(self) -> dict[str, Any]:
        """The plan-wide values (built-in < ``defaults``); callers must not mutate the result."""
        key = ("", "", "")
        if key not in self._memo:
            self._memo[key] = _merge(BUILTIN, self.defaults)
        return self._memo[key]


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_policy_file(text: str, *, file: str) -> tuple[PolicySettings, list[errors.SpecProblem]]:
    """Parse and validate; on any problem the built-in defaults apply and the problems are returned."""
    if not text.strip():
        return PolicySettings(file=file), []
    try:
        value, lines = yamlnodes.load_yaml_with_lines(text, file=file)
    except errors.SpecError as exc:
        return _broken(file, list(exc.problems))
    if value is None:
        return PolicySettings(file=file), []
    if not isinstance(value, dict):
        return _broken(file, [errors.SpecProblem(file, 1, "", "policies.yaml must be a mapping")])
    too_big = schema_mod.oversized(value, lines, file=file, max_items=MAX_ITEMS, max_values=yamlnodes.MAX_NODES)
    if too_big is not None:
        return _broken(file, [too_big])
    problems: list[errors.SpecProblem] = []
    from specs import validator as validator_mod  # noqa: PLC0415 - cerberus loads with a policy file only

    validator = validator_mod.Validator(SCHEMA)  # one per call: a validator keeps per-document state
    if not validator.validate(value):
        for path, raw in validator.flat_errors():
            message = f"unknown field; allowed here: {', '.join(sorted(_allowed(path)))}" if raw == "unknown field" \
                else raw
            problems.append(errors.SpecProblem(file, yamlnodes.line_of(lines, path), path, message))
    for scope in ("defaults", "criticality", "applications", "clusters"):
        for path, tz in _timezones(value.get(scope), scope):
            if not _zone_ok(tz):
                problems.append(errors.SpecProblem(file, yamlnodes.line_of(lines, path), path,
                                                   f"unknown time zone {tz!r} (use an IANA name like Europe/Berlin)"))
    if problems:
        return _broken(file, problems)
    doc = validator.document
    defaults = dict(doc.get("defaults") or {})
    if doc.get("freeze"):
        defaults["freeze"] = doc["freeze"]
    return PolicySettings(
        defaults=defaults, criticality=doc.get("criticality") or {},
        applications=doc.get("applications") or {}, clusters=doc.get("clusters") or {}, file=file,
    ), []


def _broken(file: str, problems: list[errors.SpecProblem]) -> tuple[PolicySettings, list[errors.SpecProblem]]:
    ordered = sorted(problems, key=lambda p: (p.line, p.field))
    return PolicySettings(file=file, problems=tuple(ordered)), ordered


def _allowed(path: str) -> list[str]:
    """The field names the schema accepts next to the unknown field at ``path``."""
    rule: Any = {"type": "dict", "schema": SCHEMA}
    for part in re.sub(r"\[\d+\]", "", path).split(".")[:-1]:
        if "valuesrules" in rule:  # applications.<name>, clusters.<name>, criticality.<level>
            rule = rule["valuesrules"]
        elif isinstance(rule.get("schema"), dict) and part in rule["schema"]:
            rule = rule["schema"][part]
        else:
            return []
        if rule.get("type") == "list" and isinstance(rule.get("schema"), dict):
            rule = rule["schema"]  # list items: the index was stripped from the path
    schema = rule.get("schema")
    return list(schema) if isinstance(schema, dict) and rule.get("type") == "dict" else []


def _timezones(node: Any, path: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}"
            if key == "timezone" and isinstance(value, str):
                found.append((sub, value))
            else:
                found += _timezones(value, sub)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += _timezones(item, f"{path}[{i}]")
    return found


def _zone_ok(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415 - only when a zone is named

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
