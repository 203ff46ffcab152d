"""conformance: the pytest suite that judges implementations of NOMYO protocol v1.0."""
