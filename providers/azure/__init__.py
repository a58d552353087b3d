"""The Azure provider: virtual machine scale sets in load balancer or application gateway pools.

``AzureProvider`` is what the ``reconciler.providers`` entry point ``azure`` names.
"""

# The SDK first: without the ``azure`` extra, importing this package fails here, whatever
# submodules an earlier import left cached, and the registry names the extra to install.
import azure.mgmt.compute  # noqa: F401

from providers.azure.edge import map_error
from providers.azure.provider import AzureProvider

__all__ = ["AzureProvider", "map_error"]
