"""The conformance checks: one module per area, each check naming the requirement ids it checks.

Most checks look where the bytes arrive, at the mock router (`router.seen`): what the port
sent, in any language. Error checks compare canonical kinds (`conformance.adapter.Kind`).
Shared helpers live in `conformance.checks._support`.
"""
