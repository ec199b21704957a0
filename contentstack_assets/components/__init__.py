"""Dagster components of contentstack_assets (`dg list components`)."""
