"""The GCP provider: regional managed instance groups, instance templates and backend services.

``GcpProvider`` is what the ``reconciler.providers`` entry point ``gcp`` names.
"""

# The SDK first: without the ``gcp`` extra, importing this package fails here, whatever
# submodules an earlier import left cached, and the registry names the extra to install.
import google.cloud.compute_v1  # noqa: F401

from providers.gcp.edge import label_key, label_value, map_error
from providers.gcp.provider import GcpProvider

__all__ = ["GcpProvider", "label_key", "label_value", "map_error"]
