"""The GCP provider: regional managed instance groups, instance templates and backend services.

``GcpProvider`` is what the ``reconciler.providers`` entry point ``gcp`` names.
"""

from providers.gcp.edge import label_key, label_value, map_error
from providers.gcp.provider import GcpProvider

__all__ = ["GcpProvider", "label_key", "label_value", "map_error"]
