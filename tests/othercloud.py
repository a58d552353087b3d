"""A second cloud for tests: the local simulated cloud under another name, registered as a plugin is.

Moving a cluster between providers needs two providers that are cheap to run; a third-party cloud
registers its class under the ``reconciler.providers`` entry-point group, and so does this one,
through a real ``*.dist-info`` directory on ``sys.path``. Its accounts share the local provider's
table, so give them names of their own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from providers.local import LocalProvider

NAME = "othercloud"


class OtherCloud(LocalProvider):
    name = NAME


@contextmanager
def registered(root: Path) -> Iterator[None]:
    """``othercloud`` is an installed provider while the context is open."""
    dist = root / "reconciler_othercloud-1.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: reconciler-othercloud\nVersion: 1.0\n",
                                   encoding="utf-8")
    (dist / "entry_points.txt").write_text(f"[reconciler.providers]\n{NAME} = tests.othercloud:OtherCloud\n",
                                           encoding="utf-8")
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
