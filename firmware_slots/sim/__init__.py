"""Simulators for the host and tests (NOR flash with a fault plan). Never imported on a board."""
