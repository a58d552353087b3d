"""The AWS provider: Auto Scaling groups with their own launch templates, behind ELBv2 target groups.

``AwsProvider`` is what the ``reconciler.providers`` entry point ``aws`` names. The package is split as
GCP's is: ``edge`` (boto3 clients, paging, retries, the rate limit, error mapping), ``records`` (tags and
state to and from the model, pure) and ``provider`` (the Provider implementation).
"""

# The SDK first: without the ``aws`` extra, importing this package fails here, whatever
# submodules an earlier import left cached, and the registry names the extra to install.
import boto3  # noqa: F401

from providers.aws.edge import NAME, SERVICE_OF, map_error, permission
from providers.aws.provider import AwsProvider
from providers.aws.records import DISABLE_PROCESSES, TAG_IMAGE, TAG_SGS, TAG_TGS, TAG_TYPE

__all__ = ["DISABLE_PROCESSES", "NAME", "SERVICE_OF", "TAG_IMAGE", "TAG_SGS", "TAG_TGS", "TAG_TYPE", "AwsProvider",
           "map_error", "permission"]
