"""migrate: move Databrain dashboards between workspaces, planned, validated, ordered, reported."""

__version__ = "0.1.0"
