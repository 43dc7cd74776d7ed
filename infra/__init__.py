"""shipyard's Pulumi program (run from infra/__main__.py) and the modules it is built from."""
