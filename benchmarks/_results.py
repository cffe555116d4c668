"""Shared by the benchmarks: write a result as JSON plus its markdown table, and print it."""

from __future__ import annotations

import json
from pathlib import Path


def write(out: str, result: dict, markdown: str) -> None:
    Path(out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    Path(out + ".md").write_text(markdown)
    print(markdown)
