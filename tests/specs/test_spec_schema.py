"""json_schema(): the editor's view of the spec format agrees with the validator's."""

from __future__ import annotations

import json
from typing import Any

from specs import schema


def properties(node: dict[str, Any], *path: str) -> dict[str, Any]:
    for name in path:
        node = node["properties"][name]
        node = node.get("items", node)
    return node


def test_the_schema_is_json_of_draft_2020_12() -> None:
    doc = json.loads(json.dumps(schema.json_schema()))

    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["type"] == "object"
    assert doc["additionalProperties"] is False
    assert sorted(doc["required"]) == ["application", "owner"]
    assert doc["anyOf"] == [{"required": ["clusters"]}, {"required": ["environments"]}]


def test_environments_are_described_with_their_constraints() -> None:
    doc = schema.json_schema()
    env = properties(doc, "environments")

    assert set(env["properties"]) == set(schema.ENVIRONMENT)
    assert env["required"] == ["name", "clusters"]
    assert set(properties(doc, "environments", "clusters")["properties"]) == set(schema.CLUSTER)
    for name, prop in env["properties"].items():
        assert prop.get("description"), name
    assert "approve" in env["properties"]["approval"]["properties"]["timeout"]["description"]


def test_every_validated_field_is_listed_and_described() -> None:
    doc = schema.json_schema()
    cluster = properties(doc, "clusters")

    assert set(doc["properties"]) == set(schema.APPLICATION)
    assert set(cluster["properties"]) == set(schema.CLUSTER)
    assert cluster["additionalProperties"] is False
    for node in (doc, cluster, properties(doc, "clusters", "health"), properties(doc, "clusters", "strategy"),
                 properties(doc, "clusters", "rollout"), properties(doc, "clusters", "capacity")):
        for name, prop in node["properties"].items():
            assert prop.get("description"), name


def test_resources_are_listed_and_described_in_their_own_words() -> None:
    doc = schema.json_schema()
    lb = properties(doc, "load_balancers")
    sg = properties(doc, "security_groups")

    assert set(lb["properties"]) == set(schema.LOAD_BALANCER) and lb["required"] == ["name"]
    assert set(sg["properties"]) == set(schema.SECURITY_GROUP)
    rule = properties(doc, "security_groups", "ingress")
    assert rule["required"] == ["protocol"] and rule["additionalProperties"] is False
    for node in (lb, sg, properties(doc, "load_balancers", "health_check"), rule):
        for name, prop in node["properties"].items():
            assert prop.get("description"), name
    health = properties(doc, "load_balancers", "health_check")["properties"]
    assert "health check" in health["timeout"]["description"].lower() or "check" in health["timeout"]["description"]
    assert health["healthy_threshold"] | {"description": ""} == {
        "type": "integer", "minimum": 2, "maximum": 10, "description": ""}


def test_enums_patterns_and_bounds_carry_over() -> None:
    doc = schema.json_schema()
    cluster = properties(doc, "clusters")

    assert doc["properties"]["criticality"]["enum"] == ["low", "normal", "critical"]
    assert doc["properties"]["application"]["pattern"] == "^[a-z][a-z0-9]*$"
    strategy = cluster["properties"]["strategy"]["properties"]
    assert strategy["type"]["enum"] == ["red_black", "highlander", "rolling_red_black", "canary"]
    canary = strategy["canary"]["properties"]
    assert canary["then"]["enum"] == ["red_black", "highlander", "rolling_red_black"]
    assert "PromQL" in canary["metrics"]["description"]
    assert canary["metrics"]["items"]["required"] == ["name", "query"]
    assert canary["metrics"]["items"]["properties"]["compare"]["properties"]["direction"]["enum"] == [
        "increase", "decrease", "either"]
    percent, step = strategy["steps"]["items"]["oneOf"]
    assert percent | {"description": ""} == {"type": "integer", "minimum": 1, "maximum": 100, "description": ""}
    assert step["required"] == ["percent"] and step["properties"]["pause_for_approval"]["type"] == "boolean"
    assert "rolling_red_black (or canary with then: rolling_red_black) only" in strategy["pause"]["description"]
    assert cluster["properties"]["health"]["properties"]["healthy_percent"] | {"description": ""} == {
        "type": "integer", "minimum": 1, "maximum": 100, "description": ""}
    assert cluster["properties"]["capacity"]["required"] == ["min", "desired", "max"]
    assert cluster["properties"]["regions"]["minItems"] == 1
    assert cluster["properties"]["stack"]["type"] == ["string", "null"]
    assert cluster["properties"]["tags"]["propertyNames"]["pattern"]
    assert set(cluster["properties"]["health"]["properties"]["timeout"]["type"]) == {"string", "integer", "number"}
    assert cluster["properties"]["rollout"]["properties"]["waves"]["items"]["items"]["type"] == "string"
