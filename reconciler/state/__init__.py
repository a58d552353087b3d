"""The state store: what the reconciler remembers between passes (SQLite or PostgreSQL)."""
