"""The spec format: one cerberus schema (kept lean: validation is the costliest part of a load),
cross-field rules cerberus cannot express, and a JSON Schema export for editors.

Why it is this long: about 150 lines are the schema itself (data: the cluster, resource, environment and
application blocks) and about 120 the descriptions the JSON Schema export carries for editors; the code around
them is the validator, the cross-field rules and the export.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import re
from collections.abc import Container, Mapping, Sequence
from typing import Any, NamedTuple

from reconciler.core import errors
from specs import automation as automation_spec
from specs import environments as env_rules
from specs import fastcheck, resource_checks, yamlnodes
from specs import images as image_spec
from specs import strategy as strategy_spec

__all__ = ["APPLICATION", "CLUSTER", "MAX_DURATION_S", "MAX_ITEMS", "MAX_VALUES", "NAME_LIMIT", "STRICT_TYPES",
           "TYPES", "json_schema", "oversized", "parse_seconds", "printable", "validate"]

NAME_LIMIT = 58
"""Longest cluster name: ``cluster-vNNN`` must fit GCE's 63-character resource names.

GCE names match ``[a-z]([-a-z0-9]*[a-z0-9])?`` and are at most 63 characters;
AWS Auto Scaling group names allow 255, so GCE is the binding limit. The
application, stack and detail patterns below keep names inside GCE's pattern.
"""

MAX_DURATION_S = 365 * 86400.0
"""Longest timeout, delay or pause a spec may ask for."""
MAX_ITEMS = 1000
"""Most items in one list or mapping of a spec (the longest the schema allows is ``clusters``, 1,000)."""
MAX_VALUES = 20_000
"""Most values in one spec file; a larger document is refused before validation (a spec has about 50)."""

_REGION_RE = r"^[a-z0-9][a-z0-9-]*$"
_PROVIDER_RE = r"^[a-z][a-z0-9_]*$"
_DURATION_RE = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"
_PRINTABLE_JSON = ("^[^\\u0000-\\u001f\\u007f-\\u00a0\\u00ad\\u2028\\u2029\\u200b-\\u200f\\u202a-\\u202e"
                   "\\u2060-\\u206f\\ufeff]*$")
"""The JSON Schema approximation of ``printable`` (no control, format or line-separator characters)."""
_duration = {"type": ["string", "integer", "float"], "regex": _DURATION_RE, "min": 0, "max_duration": MAX_DURATION_S}
_name = {"type": "string", "empty": False, "printable": True, "maxlength": 255}
_names = {"type": "list", "maxlength": 100, "schema": _name}

CLUSTER: dict[str, Any] = {
    "stack": {"type": "string", "regex": r"^[a-z0-9]*$", "nullable": True},
    "detail": {"type": "string", "regex": r"^([a-z0-9]+(-[a-z0-9]+)*)?$", "nullable": True},
    "provider": {"type": "string", "required": True, "regex": _PROVIDER_RE},
    "account": {**_name, "required": True, "maxlength": 128},
    "regions": {
        "type": "list",
        "required": True,
        "minlength": 1,
        "maxlength": 100,
        "schema": {"type": "string", "regex": _REGION_RE, "maxlength": 64},
    },
    "image": image_spec.RULE,
    "instance_type": {**_name, "required": True, "maxlength": 128},
    "capacity": {
        "type": "dict",
        "required": True,
        "schema": {k: {"type": "integer", "required": True, "min": 0, "max": 1_000_000}
                   for k in ("min", "desired", "max")},
    },
    "autoscaling": {"type": "boolean"},
    "load_balancers": _names,
    "security_groups": _names,
    "user_data": {"type": "string"},
    "tags": {
        "type": "dict",
        "maxlength": 100,
        "keysrules": {"type": "string", "regex": r"^[A-Za-z0-9_.:/=+@ -]{1,128}$"},
        "valuesrules": {"type": ["string", "integer", "float", "boolean"], "printable": True, "maxlength": 256},
    },
    "health": {
        "type": "dict",
        "schema": {
            "healthy_percent": {"type": "integer", "min": 1, "max": 100},
            "timeout": _duration,
        },
    },
    "strategy": strategy_spec.rules(_duration),
    "rollout": {
        "type": "dict",
        "schema": {
            "waves": {"type": "list", "maxlength": 100,
                      "schema": {"type": "list", "minlength": 1, "maxlength": 100,
                                 "schema": {"type": "string", "printable": True, "maxlength": 64}}},
            "pause": _duration,
        },
    },
}

_RES_NAME_RE = r"^[a-z]([a-z0-9-]*[a-z0-9])?$"
_CIDR_RE = r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$"
_PORTS_RE = r"^(all|\d{1,5}(-\d{1,5})?)$"
_port = {"type": "integer", "min": 1, "max": 65535}
_threshold = {"type": "integer", "min": 2, "max": 10}
_PLACEMENT: dict[str, Any] = {
    "provider": {"type": "string", "regex": _PROVIDER_RE},
    "account": {**_name, "maxlength": 128},
    "regions": {"type": "list", "minlength": 1, "maxlength": 100,
                "schema": {"type": "string", "regex": _REGION_RE, "maxlength": 64}},
}
HEALTH_CHECK: dict[str, Any] = {
    "protocol": {"type": "string", "allowed": ["http", "https", "tcp"]},
    "port": _port,
    "path": {"type": "string", "regex": r"^/[!-~]*$", "maxlength": 1024},
    "interval": _duration,
    "timeout": _duration,
    "healthy_threshold": _threshold,
    "unhealthy_threshold": _threshold,
}
LOAD_BALANCER: dict[str, Any] = {
    "name": {"type": "string", "required": True, "regex": _RES_NAME_RE, "maxlength": 32},
    **_PLACEMENT,
    "protocol": {"type": "string", "allowed": ["http", "https", "tcp"]},
    "port": _port,
    "health_check": {"type": "dict", "schema": HEALTH_CHECK},
    "listener": {"type": "dict", "schema": {
        "load_balancer": {"type": "string", "required": True, "regex": _RES_NAME_RE, "maxlength": 32},
        "port": {**_port, "required": True},
        "priority": {"type": "integer", "required": True, "min": 1, "max": 50000},
        "path": {"type": "string", "regex": r"^/[!-~]*$", "maxlength": 128},
        "host": {"type": "string", "regex": r"^[a-z0-9*?.-]+$", "maxlength": 128},
    }},
}
SECURITY_GROUP: dict[str, Any] = {
    "name": {"type": "string", "required": True, "regex": _RES_NAME_RE, "maxlength": 63},
    **_PLACEMENT,
    "description": {**_name, "maxlength": 255},
    "ingress": {"type": "list", "maxlength": 60, "schema": {"type": "dict", "schema": {
        "protocol": {"type": "string", "required": True, "allowed": ["tcp", "udp", "icmp", "all"]},
        "ports": {"type": ["integer", "string"], "regex": _PORTS_RE},
        "cidr": {"type": "string", "regex": _CIDR_RE},
        "group": {"type": "string", "regex": _RES_NAME_RE, "maxlength": 63},
    }}},
}
# ---- environments and versions (docs/environments.md); checked across fields in specs/environments.py
_VERSION = {"type": "string", "regex": env_rules.VERSION_RE, "maxlength": 128}
_VALUES_KEY = {"type": "string", "regex": env_rules.VALUES_KEY_RE, "maxlength": 200}
_ENV_NAME = {"type": "string", "regex": env_rules.ENV_NAME_RE, "maxlength": 40}
_ALLOWED_TIME = {"type": "dict", "schema": {
    "days": {"type": "list", "maxlength": 7, "schema": {"type": "string", "allowed": list(env_rules.DAYS)}},
    "from": {"type": "string", "regex": env_rules.FROM_RE, "required": True},
    "to": {"type": "string", "regex": env_rules.TO_RE, "required": True},
    "timezone": {"type": "string", "empty": False, "printable": True, "maxlength": 64},
}}
ENVIRONMENT: dict[str, Any] = {
    "name": {**_ENV_NAME, "required": True},
    "depends_on": {"type": "list", "maxlength": 20, "schema": _ENV_NAME},
    "soak": _duration,
    "allowed_times": {"type": "list", "minlength": 1, "maxlength": 20, "schema": _ALLOWED_TIME},
    "approval": {"type": ["boolean", "dict"], "schema": {"timeout": _duration}},
    "max_concurrent": {"type": "integer", "min": 1, "max": 100},
    "schedules": {"type": "list", "minlength": 1, "maxlength": 20, "schema": {
        "type": ["string", "dict"], "empty": False, "printable": True, "maxlength": 100, "schema": {
            "cron": {"type": "string", "required": True, "empty": False, "printable": True, "maxlength": 100},
            "timezone": {"type": "string", "empty": False, "printable": True, "maxlength": 64}}}},
    "version": _VERSION,
    "version_from": _VALUES_KEY,
    "automation": automation_spec.RULE,
    "clusters": {"type": "list", "required": True, "minlength": 1, "maxlength": 1000,
                 "schema": {"type": "dict", "schema": CLUSTER}},
}
# ---- end of environments

APPLICATION: dict[str, Any] = {
    "application": {"type": "string", "required": True, "regex": r"^[a-z][a-z0-9]*$", "maxlength": 40},
    "owner": {**_name, "required": True, "maxlength": 256},
    "criticality": {"type": "string", "allowed": ["low", "normal", "critical"]},
    "clusters": {"type": "list", "minlength": 1, "maxlength": 1000,
                 "schema": {"type": "dict", "schema": CLUSTER}},
    "load_balancers": {"type": "list", "maxlength": 100, "schema": {"type": "dict", "schema": LOAD_BALANCER}},
    "security_groups": {"type": "list", "maxlength": 100, "schema": {"type": "dict", "schema": SECURITY_GROUP}},
    "version": _VERSION,
    "version_from": _VALUES_KEY,
    "environments": {"type": "list", "minlength": 1, "maxlength": 20,
                     "schema": {"type": "dict", "schema": ENVIRONMENT}},
    "depends_on": {"type": "list", "maxlength": 50, "schema": {"type": "dict", "schema": {
        "application": {"type": "string", "required": True, "regex": r"^[a-z][a-z0-9]*$", "maxlength": 40},
        "environment": {**_ENV_NAME, "required": True},
    }}},
    "automation": automation_spec.RULE,
}

_MESSAGES = {
    _REGION_RE: "a region name such as us-east-1 or europe-west1 (lowercase letters, digits, hyphens)",
    _PROVIDER_RE: "a provider name such as local, aws or gcp (lowercase letters, digits, underscores)",
    r"^[a-z][a-z0-9]*$": "lowercase letters and digits, starting with a letter",
    r"^[a-z0-9]*$": "lowercase letters and digits only (no hyphens: they separate app-stack-detail)",
    r"^([a-z0-9]+(-[a-z0-9]+)*)?$": "lowercase letters, digits and inner hyphens",
    _DURATION_RE: "a duration like 30s, 10m or 1h",
    _RES_NAME_RE: "lowercase letters, digits and inner hyphens, starting with a letter",
    _CIDR_RE: "an IPv4 CIDR block such as 10.0.0.0/8 or 0.0.0.0/0",
    _PORTS_RE: "a port (443), a range (8080-8081) or all",
    r"^/[!-~]*$": "a path starting with / (no spaces)",
    env_rules.VERSION_RE: "a version such as 1.4.2 or 2026.12.01-3 (letters, digits, '.', '_', '+', '-')",
    env_rules.VALUES_KEY_RE: "a dotted key of values.yaml such as checkout.version",
    env_rules.ENV_NAME_RE: "an environment name such as test or prod (lowercase letters, digits, hyphens)",
    env_rules.FROM_RE: "a time such as 09:00",
    env_rules.TO_RE: "a time such as 17:00 (or 24:00)",
    **image_spec.MESSAGES,
}

def printable(text: str) -> bool:
    """No control, format (bidi, zero-width), separator or unassigned characters besides the plain space:
    what prints as one plain line."""
    return text.isprintable()


def parse_seconds(value: Any) -> float:
    """A duration's seconds, as the model will read it; ValueError or OverflowError if it is not one."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        return float(value)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", str(value))
    if not m:
        raise ValueError(value)
    return float(m.group(1)) * {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}[m.group(2)]


class TypeDef(NamedTuple):
    """What a cerberus type name accepts, as its ``TypeDefinition`` says (``specs.fastcheck`` reads these)."""

    included_types: tuple[Any, ...]
    excluded_types: tuple[type, ...] = ()


TYPES: dict[str, TypeDef] = {
    "binary": TypeDef((bytes, bytearray)), "boolean": TypeDef((bool,)), "container": TypeDef((Container,), (str,)),
    "date": TypeDef((datetime.date,)), "datetime": TypeDef((datetime.datetime,)), "dict": TypeDef((Mapping,)),
    "float": TypeDef((float, int)), "integer": TypeDef((int,)), "list": TypeDef((Sequence,), (str,)),
    "number": TypeDef((int, float), (bool,)), "set": TypeDef((set,)), "string": TypeDef((str,)),
}
"""Cerberus's ``Validator.types_mapping``, known here without importing cerberus (``specs.validator`` does,
for a document the fast check refuses; ``tests/specs/test_fastcheck.py`` compares the two)."""

STRICT_TYPES: dict[str, TypeDef] = {**TYPES, "integer": TypeDef((int,), (bool,)),
                                    "float": TypeDef((float, int), (bool,))}
"""The spec's types: YAML's booleans are no numbers (``min: true`` is a mistake, not 1)."""


@functools.cache
def _accepts() -> fastcheck.Check:
    """``APPLICATION`` compiled (``specs.fastcheck``): cerberus runs only for a document it does not accept, and
    is imported only then (a process that validates only good specs never loads it)."""
    return fastcheck.compile_schema(APPLICATION, STRICT_TYPES, printable, parse_seconds)


def oversized(doc: Any, lines: dict[str, int], *, file: str, max_items: int, max_values: int
              ) -> errors.SpecProblem | None:
    """A document too large to validate usefully: more values, or a longer list or mapping, than any valid
    one has. Checked before cerberus, whose cost grows with every error."""
    if len(lines) > max_values:
        return errors.SpecProblem(file, 1, "", f"holds {len(lines):,} values, more than the {max_values:,} "
                                               "one file may have (split it up)")
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            children = [(f"{path}.{k}" if path else str(k), v) for k, v in node.items()]
        elif isinstance(node, list):
            children = [(f"{path}[{i}]", v) for i, v in enumerate(node)]
        else:
            continue
        if len(children) > max_items:
            return errors.SpecProblem(file, yamlnodes.line_of(lines, path), path,
                                      f"{len(children):,} items, more than the {max_items:,} allowed")
        stack.extend(children)
    return None


def validate(doc: dict[str, Any], lines: dict[str, int], *, file: str) -> list[errors.SpecProblem]:
    """Every problem of one rendered spec, with lines from ``lines``."""
    too_big = oversized(doc, lines, file=file, max_items=MAX_ITEMS, max_values=MAX_VALUES)
    if too_big is not None:
        return [too_big]
    problems: list[errors.SpecProblem] = []
    if not _accepts()(doc):
        from specs import validator as validator_mod  # noqa: PLC0415 - cerberus, for a refused document only

        v = validator_mod.for_specs()
        if not v.validate(doc, normalize=False):
            for path, message in v.flat_errors():
                problems.append(
                    errors.SpecProblem(file, yamlnodes.line_of(lines, path), path, _explain(path, message, doc))
                )
    # A cross-field rule over a value the schema already rejected only adds noise.
    rejected = tuple(p.field for p in problems)
    problems += [p for p in _cross_field(doc, lines, file)
                 if not any(f == p.field or f.startswith((f"{p.field}.", f"{p.field}[")) for f in rejected)]
    return sorted(problems, key=lambda p: (p.line, p.field))


def _explain(path: str, message: str, doc: dict[str, Any]) -> str:
    if message == "unknown field":
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        allowed = _allowed_at(parent)
        return f"unknown field; allowed: {', '.join(sorted(allowed))}" if allowed else message
    if message == "must be of ['string', 'integer', 'float'] type":
        return f"must be {_MESSAGES[_DURATION_RE]}"
    if message == "min value is 0":
        return "must be 0 or more"
    m = re.match(r"value does not match regex '(.*)'", message)
    if m and m.group(1) in _MESSAGES:
        return f"must be {_MESSAGES[m.group(1)]}"
    return message


def _allowed_at(parent: str) -> list[str]:
    parts = re.sub(r"\[\d+\]", "", parent).split(".") if parent else []
    node: dict[str, Any] = APPLICATION
    for part in parts:
        rule = node.get(part, {})
        rule = rule.get("schema", {}) if rule.get("type") == "list" else rule
        node = rule.get("schema", {})
    return list(node)


def _cross_field(doc: dict[str, Any], lines: dict[str, int], file: str) -> list[errors.SpecProblem]:
    out: list[errors.SpecProblem] = []

    def bad(path: str, message: str) -> None:
        out.append(errors.SpecProblem(file, yamlnodes.line_of(lines, path), path, message))

    app = str(doc.get("application") or "app")
    names: dict[str, str] = {}
    for at, c in env_rules.all_clusters(doc):
        try:
            _check_cluster(app, at, c, names, bad)
        except (TypeError, KeyError, AttributeError, ValueError):
            continue  # the shape is wrong; the schema errors above already say how
    with contextlib.suppress(TypeError, KeyError, AttributeError, ValueError):  # wrong shape: said above
        resource_checks.check(doc, bad)
    env_rules.check(doc, bad)
    automation_spec.check(doc, bad)
    return out


def _check_cluster(app: str, at: str, c: Any, names: dict[str, str], bad: Any) -> None:
    strategy_spec.check(at, c.get("strategy"), bad)
    image_spec.check(f"{at}.image", c.get("image"), bad)
    cap = c["capacity"]
    if not cap["min"] <= cap["desired"] <= cap["max"]:
        bad(
            f"{at}.capacity",
            f"needs min <= desired <= max, got min {cap['min']}, desired {cap['desired']}, max {cap['max']}",
        )
    regions = c["regions"]
    dupes = sorted({r for r in regions if regions.count(r) > 1})
    if dupes:
        bad(f"{at}.regions", f"regions must be unique; repeated: {', '.join(dupes)}")
    waves = (c.get("rollout") or {}).get("waves")
    if waves:
        flat = [r for w in waves for r in w]
        missing = sorted(set(regions) - set(flat))
        extra = sorted(set(flat) - set(regions))
        twice = sorted({r for r in flat if flat.count(r) > 1})
        if missing or extra or twice:
            detail = "; ".join(
                x
                for x in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"not in regions: {', '.join(extra)}" if extra else "",
                    f"in more than one wave: {', '.join(twice)}" if twice else "",
                )
                if x
            )
            bad(f"{at}.rollout.waves", f"waves must cover exactly the regions, each once ({detail})")
    stack, detail = c.get("stack") or "", c.get("detail") or ""
    name = app if not (stack or detail) else f"{app}-{stack}-{detail}" if detail else f"{app}-{stack}"
    if len(name) > NAME_LIMIT:
        bad(
            f"{at}.stack",
            f"cluster name {name!r} is {len(name)} characters; at most {NAME_LIMIT} so that "
            f"'{name}-vNNN' fits GCE's 63-character limit",
        )
    if name in names:
        bad(at, f"cluster {name!r} is defined twice (also {names[name]})")
    names.setdefault(name, at)
    hp = (c.get("health") or {}).get("healthy_percent")
    if cap["desired"] > 0 and hp is not None and cap["desired"] * hp < 100 and hp < 100:
        bad(
            f"{at}.health.healthy_percent",
            f"{hp}% of {cap['desired']} instances is less than one instance; the health wait would pass "
            "with none healthy",
        )


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of the spec format, for editors and CI linters."""
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "reconciler-spec.schema.json",
        "title": "reconciler application spec",
        "description": "One application per file; rendered as a Jinja2 template before validation.",
        **_to_json(APPLICATION),
        "anyOf": [{"required": ["clusters"]}, {"required": ["environments"]}],
    }
    out["properties"]["depends_on"]["description"] = (
        "Other applications' environments whose current change must succeed before this application's "
        "change in the environment of the same name (in every cluster, without environments) starts.")
    schedule = out["properties"]["environments"]["items"]["properties"]["schedules"]
    schedule["items"] = {"oneOf": [{"type": "string", "minLength": 1, "maxLength": 100,
                                    "description": "five-field cron, read in UTC, e.g. '0 9 * * mon-thu'"},
                                   {**_to_json(ENVIRONMENT["schedules"]["schema"]["schema"]),
                                    "description": "cron read in a time zone"}]}
    approval = out["properties"]["environments"]["items"]["properties"]["approval"]
    approval["properties"]["timeout"]["description"] = (
        "How long a version waits for `reconciler approve` before it is refused here, e.g. 24h (none: forever).")
    for cluster in (out["properties"]["clusters"]["items"],
                    out["properties"]["environments"]["items"]["properties"]["clusters"]["items"]):
        strategy_spec.describe_json(cluster["properties"]["strategy"])
    pattern = _to_json(image_spec.RULE["schema"], image_spec.DESCRIPTIONS)
    pattern["anyOf"] = [{"required": [k]} for k in ("name", "tags", "family")]
    image = {"description": image_spec.DESCRIPTIONS["image"], "oneOf": [
        {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": _PRINTABLE_JSON}, pattern]}
    env_props = out["properties"]["environments"]["items"]["properties"]
    for auto in (out["properties"]["automation"], env_props["automation"]):
        auto["properties"]["image"] = {"description": automation_spec.DESCRIPTIONS["image"], "oneOf": [
            image["oneOf"][0], {**_to_json(automation_spec.RULE["schema"]["image"]["schema"],
                                           image_spec.DESCRIPTIONS), "required": ["name"]}]}
        auto["properties"]["policy"]["description"] = automation_spec.DESCRIPTIONS["policy"]
        auto["description"] = automation_spec.DESCRIPTIONS["automation"]
    for holder in (out["properties"]["clusters"]["items"],
                   out["properties"]["environments"]["items"]["properties"]["clusters"]["items"]):
        holder["properties"]["image"] = image
    return out


_DESCRIPTIONS = {
    "application": "Application name: lowercase letters and digits.",
    "owner": "Who to contact about this application.",
    "criticality": "Picks default guardrails: low, normal or critical.",
    "clusters": "Clusters of this application; each deploys to one provider account in some regions.",
    "stack": "Cluster name part: application-stack-detail.",
    "detail": "Cluster name part: application-stack-detail.",
    "provider": "local, aws, gcp or a plugin's name.",
    "account": "A provider account from the daemon's config.",
    "regions": "Regions to deploy to.",
    "image": "AMI id, GCE image URL or local image name. A change means a new server group.",
    "instance_type": "Instance or machine type. A change means a new server group.",
    "capacity": "min <= desired <= max instances per region.",
    "autoscaling": "When true, desired capacity belongs to the autoscaler and is never a diff.",
    "load_balancers": "Target groups (AWS) or backend services (GCP), by name.",
    "security_groups": "Security groups (AWS) or network tags (GCP).",
    "user_data": "Boot script; never shown in plans (may hold secrets).",
    "tags": "Extra tags/labels on every server group.",
    "health": "How the health wait of a deployment judges the new group.",
    "strategy": "How a new server group takes over: red_black, highlander, rolling_red_black or canary.",
    "rollout": "Region waves and the pause between them.",
    "min": "Fewest instances per region.",
    "desired": "Instances per region (owned by the autoscaler when autoscaling is true).",
    "max": "Most instances per region.",
    "healthy_percent": "Share of desired instances that must be healthy before the new group is enabled (1-100).",
    "timeout": "How long to wait for health, e.g. 10m; then the deployment fails (and rolls back).",
    "waves": "Region waves in order; together they list every region exactly once.",
    "pause": "Pause between waves, e.g. 10m.",
    "version": "The version to deploy; `{version}` in an image is replaced by it (docs/environments.md).",
    "version_from": "A dotted key of values.yaml holding the version (where `reconciler promote` writes it).",
    "environments": "Stages of the delivery path in order; a version enters each only when its constraints pass.",
    "name": "Environment name, e.g. test, staging, prod.",
    "depends_on": "Environments that must run the version healthy first (default: the previous one).",
    "soak": "How long each depends_on environment must have run the version healthy, e.g. 30m.",
    "allowed_times": "When a version may enter the environment (days, from, to, timezone); any one suffices.",
    "approval": "A person must approve each version for this environment (`reconciler approve APP --env ENV "
                "--version V`); timeout: how long to wait before the version is refused there.",
    "days": "Weekdays (mon..sun); all when absent.",
    "schedules": "Cron times at which a version that passed every other constraint enters (the first one at or "
                 "after it began waiting), e.g. ['0 9 * * mon-thu'] or [{cron: '0 9 * * 1-4', timezone: "
                 "Europe/Paris}].",
    "cron": "Five-field cron expression: minute hour day-of-month month day-of-week.",
    "max_concurrent": "At most this many regions of the environment take a new version at a time (the others "
                      "wait their turn); default: no limit beyond the region waves.",
    "environment": "The other application's environment whose current change must have succeeded first.",
    "from": "Start time, HH:MM, in timezone.",
    "to": "End time, HH:MM (24:00 for midnight); not after from: overnight.",
    "timezone": "IANA time zone, e.g. Europe/Paris (default UTC).",
}
_NESTED_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "load_balancers": {
        "load_balancers": "Load balancers this application declares (AWS target groups, GCP backend services "
                          "with their health checks, local simulated balancers); clusters name them in "
                          "clusters[].load_balancers. See docs/resources.md.",
        "name": "Name; clusters refer to it by this name.",
        "provider": "Provider; by default that of the clusters naming it.",
        "account": "Account; by default that of the clusters naming it.",
        "regions": "Regions; by default those of the clusters naming it (on GCP: [global], account-wide; a "
                   "region makes a regional backend service).",
        "protocol": "Traffic protocol: http (default), https or tcp; in health_check the check's (default: "
                    "the traffic protocol).",
        "port": "Traffic port (default 80); in health_check the port checked (default: the traffic port); in "
                "listener the listener's port.",
        "health_check": "How the balancer checks its targets; a change is an update in place.",
        "path": "HTTP(S) path of the health check (default /); for a listener rule, the path pattern it "
                "matches, e.g. /checkout/*.",
        "interval": "Time between checks (default 30s).",
        "timeout": "Time a check may take (default 5s).",
        "healthy_threshold": "Passing checks before a target is healthy (2-10, default 3).",
        "unhealthy_threshold": "Failing checks before a target is unhealthy (2-10, default 3).",
        "listener": "Optional: a rule on a shared load balancer's listener forwarding to this one (AWS: a "
                    "listener rule of an application load balancer made elsewhere).",
        "load_balancer": "The shared load balancer, by name (not managed here).",
        "priority": "The rule's priority on the listener (1-50000, unique per listener).",
        "host": "Host header the rule matches, e.g. shop.example.com (at least one of path and host).",
    },
    "security_groups": {
        "security_groups": "Security groups (firewall rules; on GCP firewall rules targeting the network tag "
                           "of this name) this application declares; clusters name them in "
                           "clusters[].security_groups. See docs/resources.md.",
        "name": "Name; clusters and other groups' rules refer to it by this name.",
        "provider": "Provider; by default that of the clusters naming it.",
        "account": "Account; by default that of the clusters naming it.",
        "regions": "Regions; by default those of the clusters naming it (on GCP always [global]: firewall "
                   "rules belong to the network).",
        "description": "Free text shown in the cloud's console.",
        "ingress": "Inbound rules; removing one that serving traffic may need asks for an approval.",
        "protocol": "tcp, udp, icmp or all.",
        "ports": "A port (443), a range (8080-8081) or all (the default).",
        "cidr": "Source addresses, e.g. 10.0.0.0/8 (exactly one of cidr and group).",
        "group": "Source: another security group, by name (exactly one of cidr and group).",
    },
}


def _to_json(schema: dict[str, Any], descriptions: dict[str, str] | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required = []
    for name, rule in schema.items():
        text = descriptions or _DESCRIPTIONS
        if descriptions is None and name in _NESTED_DESCRIPTIONS:  # a resource list: its own vocabulary below
            text = _NESTED_DESCRIPTIONS[name]
        props[name] = _rule_to_json(rule, text)
        if name in text:
            props[name]["description"] = text[name]
        if rule.get("required"):
            required.append(name)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _rule_to_json(rule: dict[str, Any], descriptions: dict[str, str] | None = None) -> dict[str, Any]:
    kinds = rule.get("type", "string")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    mapping = {
        "string": "string",
        "integer": "integer",
        "float": "number",
        "boolean": "boolean",
        "list": "array",
        "dict": "object",
    }
    types = sorted({mapping[k] for k in kinds})
    if rule.get("nullable"):
        types.append("null")
    out: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
    if "allowed" in rule:
        out["enum"] = rule["allowed"]
    if "regex" in rule:
        out["pattern"] = rule["regex"]
    elif rule.get("printable") and "string" in kinds:
        out["pattern"] = _PRINTABLE_JSON
    if "min" in rule:
        out["minimum"] = rule["min"]
    if "max" in rule:
        out["maximum"] = rule["max"]
    if "minlength" in rule:
        out["minItems" if "list" in kinds else "minLength"] = rule["minlength"]
    if "maxlength" in rule:
        out["maxItems" if "list" in kinds else "maxProperties" if "dict" in kinds else "maxLength"] = rule["maxlength"]
    if "list" in kinds and "schema" in rule:
        out["items"] = _rule_to_json(rule["schema"], descriptions)
    if "dict" in kinds and "schema" in rule:
        out.update(_to_json(rule["schema"], descriptions))
    if "dict" in kinds and "valuesrules" in rule:
        out["additionalProperties"] = _rule_to_json(rule["valuesrules"])
    if "dict" in kinds and "keysrules" in rule:
        out["propertyNames"] = {k: v for k, v in _rule_to_json(rule["keysrules"]).items() if k != "type"}
    return out
