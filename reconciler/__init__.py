"""reconciler: a declarative GitOps reconciler for VM fleets."""

__version__ = "0.1.0"
