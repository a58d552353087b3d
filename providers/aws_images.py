"""AWS images by pattern: one ``DescribeImages`` per (region, pattern) and pass, filtered by the cloud.

``owners`` become ``Owners`` (default ``self``: images this account baked), the name glob a ``name``
filter (AWS globs use the same ``*`` and ``?``), tags ``tag:KEY`` filters, and only ``available`` images
count. The core then chooses among what came back (``reconciler.core.images.choose``), so the rule is
the same on every cloud.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from reconciler.core import images

SERVICE_OF = {"DescribeImages": "ec2"}
"""The calls this module adds to the provider's (docs/aws.md lists the IAM actions)."""


class AwsImages:
    """Mixed into ``AwsProvider`` (which brings ``_pages``)."""

    _pages: Callable[..., list[Any]]

    def find_images(self, region: str, pattern: images.ImagePattern) -> list[images.Image]:
        filters = [{"Name": "state", "Values": ["available"]}]
        if pattern.name:
            filters.append({"Name": "name", "Values": [pattern.name]})
        filters += [{"Name": f"tag:{k}", "Values": [v]} for k, v in pattern.tags]
        found = self._pages(region, "DescribeImages", "Images", Owners=list(pattern.owners or ("self",)),
                            Filters=filters)
        return [images.Image(id=str(i["ImageId"]), name=str(i.get("Name") or ""), created=_epoch(i.get("CreationDate")),
                             tags=tuple(sorted((str(t["Key"]), str(t["Value"])) for t in i.get("Tags") or ())))
                for i in found]


def _epoch(text: Any) -> float:
    """``CreationDate`` (ISO 8601, ``Z``) as epoch seconds; an image without one sorts oldest."""
    if not isinstance(text, str) or not text:
        return 0.0
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
