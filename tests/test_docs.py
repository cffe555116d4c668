"""The README and docs quote benchmark tables verbatim from the committed results."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUOTE = re.compile(r"<!-- ([\w-]+) \((benchmarks/results/[^)]+)\) -->\n(.*?)<!-- /\1 -->", re.S)
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
QUOTES = [(doc.name, name, path, body) for doc in DOCS for name, path, body in QUOTE.findall(doc.read_text())]


def test_the_readme_quotes_the_load_and_latency_results():
    assert {(d, n) for d, n, _, _ in QUOTES} >= {("README.md", "bench-table"), ("README.md", "load-table")}


@pytest.mark.parametrize("doc, name, path, body", QUOTES, ids=[f"{d}:{n}" for d, n, _, _ in QUOTES])
def test_a_quoted_table_is_the_committed_result(doc, name, path, body):
    assert body.strip() == (ROOT / path).read_text().strip(), f"{doc} <!-- {name} --> differs from {path}"
