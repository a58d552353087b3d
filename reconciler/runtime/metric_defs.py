"""The Prometheus metrics, in a registry of our own (so tests and embedders get a clean slate): read them
through ``reconciler.runtime.metrics``, which imports this module with the first metric a process uses."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

PASS_DURATION = Histogram(
    "reconciler_pass_duration_seconds",
    "Wall time of one reconcile pass (fetch, plan, dispatch).",
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
LAST_SUCCESS = Gauge(
    "reconciler_last_successful_pass_timestamp_seconds",
    "When the last pass that read the repository and planned without error ended.",
    registry=REGISTRY,
)
CHANGES = Counter(
    "reconciler_changes_total",
    "Changes by action and outcome (planned, applied, failed, rolled_back, denied).",
    ["action", "outcome"],
    registry=REGISTRY,
)
API_CALLS = Counter(
    "reconciler_provider_calls_total",
    "Provider calls by provider and operation.",
    ["provider", "call"],
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "reconciler_provider_errors_total",
    "Provider call failures by provider and error class.",
    ["provider", "error"],
    registry=REGISTRY,
)
PENDING_APPROVALS = Gauge(
    "reconciler_pending_approvals", "Changes waiting for an approval.", registry=REGISTRY
)
DRIFT = Gauge(
    "reconciler_drifted_clusters", "Clusters whose live state drifted from Git.", registry=REGISTRY
)
SPEC_ERRORS = Gauge(
    "reconciler_spec_errors", "Spec problems in the commit in force.", registry=REGISTRY
)
EXECUTIONS_RUNNING = Gauge(
    "reconciler_executions_running", "Executions in progress.", registry=REGISTRY
)
HA_LIVE_REPLICAS = Gauge(
    "reconciler_ha_live_replicas", "Daemon replicas with a current heartbeat, as this one sees them.",
    registry=REGISTRY,
)
HA_CLAIMS = Gauge(
    "reconciler_ha_claims", "Cluster claims this replica holds.", registry=REGISTRY
)
HA_LAST_HEARTBEAT = Gauge(
    "reconciler_ha_last_heartbeat_timestamp_seconds", "When this replica's last heartbeat was written.",
    registry=REGISTRY,
)
HA_HEARTBEAT_FAILURES = Counter(
    "reconciler_ha_heartbeat_failures_total", "Heartbeats that could not be written.", registry=REGISTRY
)
HA_FENCED = Counter(
    "reconciler_ha_fenced_total",
    "Executions stopped because their claim lapsed or moved (the database refused their write).",
    registry=REGISTRY,
)
HA_REPLICA_CLAIMS = Gauge(
    "reconciler_ha_replica_claims", "Claims held per replica, as the database says.", ["replica"],
    registry=REGISTRY,
)
HA_REPLICA_HEARTBEAT_AGE = Gauge(
    "reconciler_ha_replica_heartbeat_age_seconds", "Seconds since each replica's last heartbeat.", ["replica"],
    registry=REGISTRY,
)
