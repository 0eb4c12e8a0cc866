"""Envoy: find the binary, render its config, run it (local process or Docker container), read its admin API."""
