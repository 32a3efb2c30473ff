"""Stacks: network, engine, registry and CI container, planned purely and reconciled."""
