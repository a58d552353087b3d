"""Images given by pattern: what a spec asks for, what a provider found, and the pure choice between them.

A cluster may name its image by pattern (``image: {name: "checkout-{version}-*", newest: true}``)
instead of by id, because a bake makes one image per region with a different id in each. The
runtime asks each region's provider for its candidates (``runtime/images.py``); this module
decides, the same way for every cloud, which candidate (if any) the region runs, so a pattern
never means one thing on AWS and another on GCP.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ImagePattern:
    """The spec's ``image:`` mapping, with ``{version}`` already replaced."""

    name: str = ""  # a glob (``*``, ``?``) on the image's name; empty: any name
    tags: tuple[tuple[str, str], ...] = ()  # tags (AWS) or labels (GCP, local) the image must carry
    owners: tuple[str, ...] = ()  # AWS: who owns the image (account ids, ``self``, ``amazon``); empty: self
    family: str = ""  # GCP: the image family; local: the image's ``family`` in the configured list
    project: str = ""  # GCP: the project holding the images; empty: the account's project
    newest: bool = False  # several images match: take the newest (else that is a spec problem)

    def describe(self) -> str:
        """The pattern as people read it in problems and plans."""
        parts = [f"name {self.name}" if self.name else "", f"family {self.family}" if self.family else "",
                 ", ".join(f"tag {k}={v}" for k, v in self.tags), f"owners {','.join(self.owners)}"
                 if self.owners else "", f"project {self.project}" if self.project else ""]
        return ", ".join(p for p in parts if p) or "any image"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name} if self.name else {}
        out["newest"] = self.newest
        if self.tags:
            out["tags"] = dict(self.tags)
        for key in ("owners", "family", "project"):
            value = getattr(self, key)
            if value:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, slots=True)
class Image:
    """One image a provider reported in one region."""

    id: str  # what a server group is launched from: an AMI id, a GCE image URL, a local image name
    name: str
    created: float = 0.0  # epoch seconds; the newest wins under ``newest: true``
    tags: tuple[tuple[str, str], ...] = ()
    family: str = ""


@dataclass(frozen=True, slots=True)
class Resolution:
    """What one region runs for one pattern: an image, or why none."""

    image: Image | None
    problem: str = ""


def matches(pattern: ImagePattern, image: Image) -> bool:
    """Applied to every candidate whatever the provider pre-filtered: a pattern means one thing everywhere."""
    if pattern.name and not fnmatch.fnmatchcase(image.name, pattern.name):
        return False
    if pattern.family and image.family != pattern.family:
        return False
    have = dict(image.tags)
    return all(have.get(k) == v for k, v in pattern.tags)


def choose(pattern: ImagePattern, candidates: Iterable[Image]) -> Resolution:
    """The image the region runs: the one match, or the newest under ``newest: true``."""
    found = sorted({i.id: i for i in candidates if matches(pattern, i)}.values(),
                   key=lambda i: (i.created, i.name, i.id), reverse=True)
    if not found:
        return Resolution(None, f"no image matches {pattern.describe()}")
    if len(found) > 1 and not pattern.newest:
        names = ", ".join(f"{i.name} ({i.id})" for i in found[:3]) + (", ..." if len(found) > 3 else "")
        return Resolution(None, f"{len(found)} images match {pattern.describe()}: {names}; set newest: true "
                                "to take the newest, or narrow the pattern")
    return Resolution(found[0])
