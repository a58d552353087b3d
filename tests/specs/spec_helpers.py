"""Building spec trees in memory for the spec tests: files as the Git source hands them over."""

from __future__ import annotations

import hashlib
import textwrap
from collections import Counter
from collections.abc import Callable

from reconciler.core import model
from specs import loader

VALID = """
application: checkout
owner: payments@example.com
criticality: critical
clusters:
  - stack: main
    detail: blue
    provider: aws
    account: prod
    regions: [us-east-1, eu-west-1]
    image: "{{ values.checkout_image }}"
    instance_type: m5.large
    capacity: {min: 2, desired: 3, max: 6}
    autoscaling: true
    load_balancers: [checkout-web]
    security_groups: [checkout, base]
    user_data: "#!/bin/sh\\necho hi\\n"
    tags: {team: payments, cost: 42, pci: true}
    health: {healthy_percent: 75, timeout: 15m}
    strategy: {type: red_black, keep_disabled: 2, scale_down: false,
               delay_before_disable: 30s, delay_before_scale_down: 1h,
               rollback_on_failure: false}
    rollout: {waves: [[us-east-1], [eu-west-1]], pause: 90}
  - provider: local
    account: default
    regions: [local-1]
    image: checkout-1.2
    instance_type: small
    capacity: {min: 0, desired: 0, max: 0}
"""
"""Every field set in the first cluster, only the required ones in the second."""

MINIMAL = """
application: {name}
owner: team@example.com
clusters:
  - provider: local
    account: default
    regions: [local-1]
    image: img-1
    instance_type: small
    capacity: {capacity}
"""


def minimal(name: str = "shop", extra: str = "", capacity: str = "{min: 1, desired: 1, max: 2}") -> str:
    """The smallest valid spec for ``name``; ``extra`` lines are appended to its one cluster."""
    text = MINIMAL.format(name=name, capacity=capacity).lstrip("\n")
    for line in textwrap.dedent(extra).strip("\n").splitlines():
        text += f"    {line}\n"
    return text


class Tree:
    """Files under ``apps/`` with git-like blob ids; counts how often each file was read."""

    def __init__(self, files: dict[str, str | bytes] | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.reads: Counter[str] = Counter()
        for path, text in (files or {}).items():
            self.put(path, text)

    def put(self, path: str, text: str | bytes) -> Tree:
        data = text if isinstance(text, bytes) else textwrap.dedent(text).lstrip("\n").encode()
        self.files[path if path.startswith("apps/") else f"apps/{path}"] = data
        return self

    def remove(self, path: str) -> Tree:
        del self.files[f"apps/{path}"]
        return self

    def spec_files(self) -> list[loader.SpecFile]:
        def reader(path: str) -> Callable[[], bytes]:
            def read() -> bytes:
                self.reads[path] += 1
                return self.files[path]
            return read

        # sha1 names content as git does; not a security use
        return [loader.SpecFile(p, hashlib.sha1(d).hexdigest(), reader(p))  # noqa: S324
                for p, d in sorted(self.files.items())]

    def load(self, cache: loader.SpecCache | None = None, commit: str = "c0") -> model.DesiredState:
        return loader.load_specs(self.spec_files(), spec_path="apps", commit=commit, cache=cache)


def lines_of(state: model.DesiredState) -> list[str]:
    """Problems as the CLI prints them."""
    return [str(p) for p in state.problems]
