"""Cloud Foundry for reconciler: an app per server group, routes as its load balancers.

``CloudFoundryProvider`` is what the ``reconciler.providers`` entry point ``cloudfoundry`` names.
"""

# The client first: without it, loading the entry point fails here and the registry names the extra.
import cloudfoundry_client  # noqa: F401

from reconciler_cloudfoundry.provider import CloudFoundryProvider

__all__ = ["CloudFoundryProvider"]
