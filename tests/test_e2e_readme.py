"""The README's client examples, run as written against the demo (issue 25, point 2).

The shipped litellm_config.yaml behind a real proxy, its upstream the demo's cast (the
fake upstream with `--cast`, as `chorus serve --demo` runs it): the session's `demo`
fixture (tests/conftest.py), which tests/test_browser.py shares. Each code block of the
README's "Calling a fusion model" section runs in its own process, only the address
changed (127.0.0.1:4000 -> this proxy; the config's 127.0.0.1:8001 -> this upstream):
every one must fuse and show the stages' progress, not only the answer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTION = ("## Calling a fusion model", "## Adding fusion to your own proxy")


def readme_examples() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION[0]):text.index(SECTION[1])]
    return re.findall(r"```(python|bash)\n(.*?)```", section, re.S)


EXAMPLES = readme_examples()


def run_example(demo, lang: str, code: str) -> str:
    code = code.replace("http://127.0.0.1:4000", demo.url)
    cmd = [sys.executable, "-c", code] if lang == "python" else ["bash", "-c", code]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=demo.workdir,
                          env={**os.environ, **demo.env, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_readme_has_every_surface():
    kinds = [("curl" in code, "responses." in code, "anthropic" in code, "register(" in code, "stream=True" in code)
             for _, code in EXAMPLES]
    assert len(EXAMPLES) == 5 and [k.index(True) for k in kinds] == [0, 4, 1, 2, 3]


@pytest.mark.parametrize("lang, code", EXAMPLES, ids=["curl", "openai-stream", "responses", "anthropic", "sdk"])
def test_each_readme_example_fuses_and_shows_its_progress(demo, lang, code):
    out = run_example(demo, lang, code)
    if lang == "bash":  # curl: the whole JSON body, with its chorus extension
        body = json.loads(out)
        assert body["chorus"]["route"]["decision"] == "fuse" and body["chorus"]["cost"]["total"] > 0
        assert "Final answer:" in body["choices"][0]["message"]["content"]
    elif "register(" in code:  # the SDK, no proxy: the answer and what it cost
        assert "Final answer:" in out and " fuse {'total':" in out
    else:  # the streamed surfaces: the debate's rounds, then the answer
        progress, answer = out.split("Judge analysis done.", 1) if "Judge analysis done." in out else (out, "")
        assert "Round 1:" in progress and "Round 2:" in progress, out[:2000]
        assert "\033[2m" in progress and "Final answer:" in answer, out[-2000:]
