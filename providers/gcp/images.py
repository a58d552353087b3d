"""GCP images by pattern: images are global resources, so every region of a project sees the same ones.

One paginated ``images.list`` of the pattern's project (default: the account's) per (region, pattern)
and pass, filtered by the API on ``family`` and ``labels.KEY`` where the pattern has them; only READY
images that are not deprecated count. The core then applies the whole pattern (the name glob too) and
chooses (``reconciler.core.images.choose``). GCE image names and label values allow no dots: a version
such as ``1.4.2`` matches GCP images only through a family or a description-free scheme like ``1-4-2``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from google.cloud import compute_v1

from reconciler.core import images

_GONE = {"DEPRECATED", "OBSOLETE", "DELETED"}


class GcpImages:
    """Mixed into ``GcpProvider`` (which brings ``project``, ``images_client`` and ``_pages``)."""

    project: str
    images_client: compute_v1.ImagesClient
    _pages: Callable[..., Iterator[Any]]

    def find_images(self, region: str, pattern: images.ImagePattern) -> list[images.Image]:
        project = pattern.project or self.project
        clauses = ([f'(family = "{pattern.family}")'] if pattern.family else []) + [
            f'(labels.{k} = "{v}")' for k, v in pattern.tags]
        request = compute_v1.ListImagesRequest(project=project, filter=" ".join(clauses))
        out: list[images.Image] = []
        for page in self._pages("images.list", "global", self.images_client.list, request):
            for i in page.items:
                if i.status != "READY" or (i.deprecated and i.deprecated.state in _GONE):
                    continue
                out.append(images.Image(id=f"projects/{project}/global/images/{i.name}", name=i.name,
                                        created=_epoch(i.creation_timestamp), family=i.family,
                                        tags=tuple(sorted(dict(i.labels).items()))))
        return out


def _epoch(text: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp() if text else 0.0
    except ValueError:
        return 0.0
