"""Tests of the suite's server mode: broken routers, and the proof that each check can fail."""
