"""shipyard's policy pack: validators in `policies.py`, the pack in `__main__.py`."""
