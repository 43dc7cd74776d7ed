"""Maintenance scripts: setup (stdlib only, runs before .venv exists), docs refresh, benchmarks."""
