"""After the answer: sign the receipt (`signing.py`, Ed25519 over RFC 8785 JSON; `keys.py`
names a key), then keep it, the transcript and reputation (`finish.py`). How the bounty
is split is a pure stage, `core/stages/bounty.py`. Internal; receipts are verified as
docs/receipts.md shows."""
