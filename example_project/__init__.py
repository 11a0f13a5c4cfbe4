"""The metaxy video pipeline as a Dagster project (see definitions.py)."""
