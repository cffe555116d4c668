"""What leaves a run besides its answer: the live event log (`live.py`), Prometheus
metrics, OpenTelemetry spans, signed webhooks, and the guard (`netguard.py`,
`allowlist.py`) every connection to a user-given URL goes through. Internal."""
