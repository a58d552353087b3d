"""The spec language: render, parse, validate and model desired state."""
