"""Image automation: which newer version the images a provider lists offer, under a semver policy. Pure.

``automation: {image: "checkout-{version}-*", policy: "semver >=2.0 <3"}`` on an application lets
the daemon write a newer version into Git itself when a matching image appears, like Flux's image
automation: the commit, not the daemon's memory, is what deploys. This module reads the version
out of each image name, keeps the versions the policy admits and that every location (provider,
account, region) of the application has, and says whether the newest of them is newer than the
version Git holds. The runtime (``runtime/automation.py``) lists the images and makes the commit.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import semver

from reconciler.core import images

PLACEHOLDER = "{version}"
_CMP_RE = re.compile(r"^(>=|<=|==|!=|>|<|=)?\s*v?(\d+(?:\.\d+){0,2}(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)$")
_VERSION_CHARS = r"[A-Za-z0-9._+-]+"


@dataclass(frozen=True, slots=True)
class Bound:
    op: str  # >=, <=, >, <, ==, !=
    version: str  # as written, a plain value like every model field (the spec cache stores them)

    @property
    def parsed(self) -> semver.Version:
        found = parse_version(self.version)
        assert found is not None, self.version  # parse_policy admitted only versions that parse
        return found

    def admits(self, v: semver.Version) -> bool:
        c = v.compare(self.parsed)
        return {">=": c >= 0, "<=": c <= 0, ">": c > 0, "<": c < 0, "==": c == 0, "!=": c != 0}[self.op]


@dataclass(frozen=True, slots=True)
class Policy:
    """``semver >=2.0 <3``: the versions every bound admits; pre-releases only when a bound names one."""

    text: str
    bounds: tuple[Bound, ...] = ()

    def admits(self, v: semver.Version) -> bool:
        if v.prerelease and not any(b.parsed.prerelease for b in self.bounds):
            return False  # 3.0.0-rc.1 is not "< 3" for a release train, as in npm, Masterminds and Flux
        return all(b.admits(v) for b in self.bounds)


@dataclass(frozen=True, slots=True)
class ImageAutomation:
    """An application's ``automation:`` block; ``pattern.name`` still holds ``{version}``."""

    pattern: images.ImagePattern
    policy: Policy
    line: int = 0

    def lookup(self) -> images.ImagePattern:
        """What the providers are asked for: the pattern with any version in place of ``{version}``."""
        return dataclasses.replace(self.pattern, name=self.pattern.name.replace(PLACEHOLDER, "*"), newest=True)


@dataclass(frozen=True, slots=True)
class Decision:
    """What one look at the images found: ``version`` to commit (None: nothing to do) and why."""

    version: str | None
    latest: str | None  # the newest version the policy admits that every location has
    reason: str
    candidates: int = 0  # versions the policy admits that every location has


def parse_version(text: str) -> semver.Version | None:
    """``2``, ``2.1`` and ``v2.1.0`` read as 2.0.0, 2.1.0 and 2.1.0; anything else is not a semver version."""
    text = text[1:] if text[:1] in ("v", "V") else text
    try:
        return semver.Version.parse(text, optional_minor_and_patch=True)
    except (ValueError, TypeError):
        return None


def parse_policy(text: str) -> Policy:
    """``semver RANGE``: RANGE is comparisons separated by spaces or commas (``>=2.0 <3``); ValueError says why."""
    words = text.strip().split(None, 1)
    if not words or words[0] != "semver":
        raise ValueError(f"{text!r}: a policy is 'semver' and a range, e.g. 'semver >=2.0 <3'")
    rest = words[1] if len(words) > 1 else ""
    tokens = [t for t in re.split(r"[\s,]+", re.sub(r"(>=|<=|==|!=|>|<|=)\s+", r"\1", rest)) if t]
    bounds: list[Bound] = []
    for token in tokens:
        m = _CMP_RE.match(token)
        version = parse_version(m.group(2)) if m else None
        if m is None or version is None:
            raise ValueError(f"{text!r}: {token!r} is not a comparison such as >=2.0, <3 or 2.4.1")
        op = m.group(1) or "=="
        bounds.append(Bound("==" if op == "=" else op, m.group(2)))
    if not bounds:
        raise ValueError(f"{text!r}: give a range after semver, e.g. 'semver >=2.0 <3' (or 'semver >=0' for any)")
    return Policy(text.strip(), tuple(bounds))


def name_regex(glob: str) -> re.Pattern[str]:
    """The image-name glob as a regex whose ``version`` group captures what stands for ``{version}``."""
    head, _, tail = glob.partition(PLACEHOLDER)
    return re.compile(fnmatch.translate(head)[4:-3] + f"(?P<version>{_VERSION_CHARS})"
                      + fnmatch.translate(tail.replace(PLACEHOLDER, "*"))[4:-3] + r"\Z")


def versions_in(auto: ImageAutomation, found: Iterable[images.Image]) -> dict[str, semver.Version]:
    """The versions (as written in the image names) of the images that match the pattern."""
    rx = name_regex(auto.pattern.name)
    lookup = auto.lookup()
    out: dict[str, semver.Version] = {}
    for image in found:
        m = rx.match(image.name)
        if m is None or not images.matches(lookup, image):
            continue
        version = parse_version(m.group("version"))
        if version is not None:
            out[m.group("version")] = version
    return out


def decide(auto: ImageAutomation, per_location: Sequence[Iterable[images.Image]], current: str) -> Decision:
    """The newest admitted version every location has, and whether it is newer than ``current`` (Git's)."""
    if not per_location:
        return Decision(None, None, "the application has no clusters to look for images in")
    sets = [versions_in(auto, found) for found in per_location]
    common = {k: v for k, v in sets[0].items() if all(k in s for s in sets[1:])}
    admitted = {k: v for k, v in common.items() if auto.policy.admits(v)}
    if not admitted:
        seen = len({k for s in sets for k in s})
        return Decision(None, None, f"no image in every region has a version {auto.policy.text} admits "
                                    f"({seen} version(s) found)")
    latest = max(admitted, key=lambda k: (admitted[k], k))
    have = parse_version(current)
    if current == latest or (have is not None and have.compare(admitted[latest]) >= 0):
        return Decision(None, latest, f"Git has {current}, the newest admitted is {latest}", len(admitted))
    return Decision(latest, latest, f"{latest} is newer than {current or 'nothing'}", len(admitted))
