"""The verdict of a run: terminal summary, report.json and a self-contained report.html.

`python -m conformance.report merge DIR_OR_JSON... -o out.html` puts several
implementations side by side.
"""

from __future__ import annotations

from conformance.report.run import finish_run, terminal_summary

__all__ = ["finish_run", "terminal_summary"]
