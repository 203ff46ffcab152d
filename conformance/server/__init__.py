"""Server mode of the conformance suite: `pytest conformance --server=URL` judges a router.

The suite's own client code (never nomyo_ref, never mock_router: the independence rule) sends
valid and malformed requests to a NOMYO-compatible router and judges its answers requirement
by requirement, with the verdicts, report files and expected-failures files of client mode.

Modules, one job each: `options` (command line and declared policy), `mode` (the pytest
hooks of server mode), `wire` (base64, packages, X-Public-Key encodings), `keys` (the suite's
client key pairs), `key_forms` (public keys in the forms a router must refuse), `drafts` (a
request before it is sealed, and sealing it), `transport` (HTTP with the live profile's
request budget), `rawhttp` (bodies too large to send honestly), `session` (the router under
test: sends drafts, remembers exchanges), `faults` (the malformed-request classes of spec
9.2), `strategies` (hypothesis), `analysis` (what a 200 answer proves, requirement by
requirement), `judge` (findings into verdicts). The checks are in `checks/`.
"""
