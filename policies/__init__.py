"""Guardrails: one module per rule, each a pure function of (plan, context) -> verdicts."""
