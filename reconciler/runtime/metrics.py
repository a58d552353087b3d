"""Prometheus metrics, defined in ``metric_defs`` and imported from there with the first one a process uses.

``prometheus_client`` costs a process 11 MB resident: the daemon uses every metric, while ``plan`` and
``status`` use none (a preview counts nothing), so they never import it. ``metrics.PASS_DURATION`` and
``from reconciler.runtime.metrics import REGISTRY`` work as if the metrics were defined here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.runtime.metric_defs import *  # noqa: F403 - what mypy checks every use against


def __getattr__(name: str) -> Any:
    if name.startswith("__"):  # copy, pickle and the import system probe these
        raise AttributeError(name)
    from reconciler.runtime import metric_defs  # noqa: PLC0415 - the import lock makes racing threads wait

    try:
        value = getattr(metric_defs, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value  # later reads do not come here
    return value
