"""An application's ``automation:`` block: commit a newer image's version by itself (docs/environments.md).

``automation: {image: "checkout-{version}-*", policy: "semver >=2.0 <3"}`` names the images whose
names carry the version (``{version}`` marks where) and which versions may be taken. The daemon
looks them up through the same providers as image patterns and, when every region has a newer
admitted one, commits it where the application's version is declared, as ``reconciler promote``
does. Mistakes here are spec problems of the file, so a bad policy never reaches the daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.core import automation, images
from specs import images as image_spec

_PATTERN = {key: rule for key, rule in image_spec.RULE["schema"].items() if key != "newest"}
RULE: dict[str, Any] = {"type": "dict", "schema": {
    "image": {**image_spec.RULE, "schema": _PATTERN},
    "policy": {"type": "string", "required": True, "empty": False, "printable": True, "maxlength": 200},
}}

DESCRIPTIONS = {
    "automation": "Image automation: when every region of the application has an image of a newer version "
                  "that the policy admits, the daemon commits that version where version/version_from declares "
                  "it (docs/environments.md).",
    "image": "The images to watch: a glob on the image name holding {version} where the version stands "
             "(checkout-{version}-*), or a mapping {name, tags, owners, family, project} with such a name.",
    "policy": "Which versions may be taken: 'semver' and a range, e.g. 'semver >=2.0 <3'; pre-releases only "
              "when a bound names one.",
}


def check(doc: dict[str, Any], bad: Callable[[str, str], None]) -> None:
    """What cerberus cannot say: where the version stands, a policy that parses, somewhere to write to."""
    envs = doc.get("environments")
    holders = [("", doc), *((f"environments[{e}].", env) for e, env in enumerate(envs if isinstance(envs, list) else [])
                            if isinstance(env, dict))]
    for at, holder in holders:
        raw = holder.get("automation")
        if isinstance(raw, dict):
            _check(at, raw, bad)
            if not holder.get("version") and not holder.get("version_from"):
                bad(f"{at}automation", "automation writes the application's version: add version_from (a key of "
                                       "values.yaml) or version to this file" if not at else
                    "automation on an environment writes that environment's own version: add version_from (a "
                    "key of values.yaml) or version to this environment")


def _check(at: str, raw: dict[str, Any], bad: Callable[[str, str], None]) -> None:
    image = raw.get("image")
    name = image.get("name") if isinstance(image, dict) else image
    where = f"{at}automation.image.name" if isinstance(image, dict) else f"{at}automation.image"
    if isinstance(name, str) and name.count(automation.PLACEHOLDER) != 1:
        bad(where, f"{name!r} must hold {automation.PLACEHOLDER} once, where the version stands in the image "
                   "name (e.g. checkout-{version}-*)")
    elif image is not None and not isinstance(name, str):
        bad(where, "give the image name with {version} where the version stands (e.g. checkout-{version}-*)")
    if isinstance(image, dict):
        for key in ("family", "project", "tags"):
            if automation.PLACEHOLDER in str(image.get(key) or ""):
                bad(f"{at}automation.image.{key}", "{version} stands only in name: the version is read from it")
    policy = raw.get("policy")
    if isinstance(policy, str):
        try:
            automation.parse_policy(policy)
        except ValueError as exc:
            bad(f"{at}automation.policy", str(exc))


def to_model(raw: Any, line: int) -> automation.ImageAutomation | None:
    """The validated block as a value (None when the application has none)."""
    if not isinstance(raw, dict):
        return None
    image = raw["image"]
    spec = image if isinstance(image, dict) else {"name": image}
    pattern = images.ImagePattern(
        name=str(spec.get("name") or ""),
        tags=tuple(sorted((str(k), str(v)) for k, v in (spec.get("tags") or {}).items())),
        owners=tuple(str(o) for o in spec.get("owners") or ()),
        family=str(spec.get("family") or ""),
        project=str(spec.get("project") or ""),
    )
    return automation.ImageAutomation(pattern, automation.parse_policy(str(raw["policy"])), line)
