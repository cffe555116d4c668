"""The fusion core: the pipeline read top to bottom, its stages, the nouns and events of a
run, and the ports (`ports.py`) through which it reaches models and storage. Nothing here
imports from the I/O folders (`gateway`, `storage`, `observe`, `market.sync`,
`market.routes`, `settlement.signing`); tests/test_architecture.py checks it. Internal."""
