"""The runtime: a reconcile pass end to end, its executions, and the metrics they report."""
