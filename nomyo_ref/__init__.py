"""nomyo_ref: the reference client of the NOMYO secure completion protocol v1.0."""
