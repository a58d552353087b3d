"""The ``image:`` of a cluster given by pattern, resolved per region (docs/environments.md).

``image: "ami-0abc"`` names one image everywhere; ``image: {name: "checkout-{version}-*", newest: true}``
(or ``tags``, or on GCP ``family``) is resolved in each region through its provider before planning,
because a bake makes a different image id in every region.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler.core import images

_GLOB = {"type": "string", "empty": False, "printable": True, "maxlength": 255}
OWNER_RE = r"^(self|amazon|aws-marketplace|\d{12})$"
FAMILY_RE = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
PROJECT_RE = r"^[a-z][-a-z0-9.:]{4,62}$"
MESSAGES = {
    OWNER_RE: "an image owner: self, amazon, aws-marketplace or a 12-digit account id",
    FAMILY_RE: "an image family: lowercase letters, digits and inner hyphens, starting with a letter",
    PROJECT_RE: "a GCP project id such as my-project",
}

RULE: dict[str, Any] = {
    "type": ["string", "dict"], "required": True, "empty": False, "printable": True, "maxlength": 1024,
    "schema": {
        "name": _GLOB,
        "tags": {"type": "dict", "maxlength": 20,
                 "keysrules": {"type": "string", "regex": r"^[A-Za-z0-9_.:/=+@ -]{1,128}$"},
                 "valuesrules": {"type": "string", "printable": True, "maxlength": 256}},
        "owners": {"type": "list", "minlength": 1, "maxlength": 20,
                   "schema": {"type": "string", "regex": OWNER_RE}},
        "family": {"type": "string", "regex": FAMILY_RE, "maxlength": 63},
        "project": {"type": "string", "regex": PROJECT_RE, "maxlength": 63},
        "newest": {"type": "boolean"},
    },
}

DESCRIPTIONS = {
    "image": "AMI id, GCE image URL or local image name; or a pattern resolved per region ({name, tags, owners, "
             "family, project, newest}). A change means a new server group.",
    "name": "Glob on the image name, e.g. checkout-{version}-*.",
    "tags": "Tags (AWS) or labels (GCP, local) the image must carry.",
    "owners": "AWS: image owners (self, amazon, aws-marketplace or account ids); default self.",
    "family": "GCP: image family (the local provider reads it from its configured images).",
    "project": "GCP: the project holding the images; default the account's project.",
    "newest": "When several images match, take the newest (otherwise that is a spec problem).",
}


def check(at: str, raw: Any, bad: Callable[[str, str], None]) -> None:
    """What cerberus cannot say: a pattern must narrow something, and a string is not a mapping."""
    if isinstance(raw, dict) and not (raw.get("name") or raw.get("tags") or raw.get("family")):
        bad(at, "an image pattern needs name, tags or family (or give the image id as a string)")


def placeholders(raw: Any) -> list[str]:
    """The texts of ``raw`` where ``{version}`` may stand."""
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, Mapping):
        return []
    tags = raw.get("tags")
    return [str(raw.get("name") or ""), str(raw.get("family") or ""),
            *(str(v) for v in (tags.values() if isinstance(tags, Mapping) else ()))]


def to_model(raw: Any, fill: Callable[[str], str]) -> tuple[str, images.ImagePattern | None]:
    """(what ``launch.image`` shows, the pattern or None); ``fill`` replaces ``{version}``."""
    if not isinstance(raw, Mapping):
        return fill(str(raw)), None
    pattern = images.ImagePattern(
        name=fill(str(raw.get("name") or "")),
        tags=tuple(sorted((str(k), fill(str(v))) for k, v in (raw.get("tags") or {}).items())),
        owners=tuple(str(o) for o in raw.get("owners") or ()),
        family=fill(str(raw.get("family") or "")),
        project=str(raw.get("project") or ""),
        newest=bool(raw.get("newest", False)),
    )
    return pattern.describe(), pattern
