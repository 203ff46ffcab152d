"""The server checks: `pytest conformance --server=URL` runs these and only these."""
