"""conformance: the pytest suite that judges implementations of NOMYO protocol v1.0.

    pytest conformance --impl=nomyo_ref | nomyo | module:object | "cmd:COMMAND"

`conformance.adapter` is the interface an implementation is driven through, `conformance.plugin`
the pytest plugin (options, markers, fixtures, verdicts), `conformance.expect` the assertion
helpers of the checks, `conformance.report` the verdict (terminal, JSON, HTML) and
`conformance.checks` the checks themselves.
"""
