"""The marketplace: peers who join a pool (`peers.py`), their routes (`routes.py`), their
sync into every worker's Router (`sync.py`) and the `chorus peer` command (`cli.py`).
Which live peers sit on a panel is a pure stage, `core/stages/draw.py`. Internal."""
