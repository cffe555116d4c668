"""The `chorus` command line as a parser: every option says what it does (issue 25:
`chorus peer join --help` had no text for --key, --pool, --max-concurrency); and what a
command does before it reaches LiteLLM (issue 25: `chorus serve` on a machine without a
network retried a price map download for seconds)."""

import argparse
import http.server
import os
import subprocess
import sys
import threading

import pytest

from chorus_litellm.cli import build_parser
from tests.servers import ROOT


def commands(parser: argparse.ArgumentParser, name: str = "chorus"):
    """(command name, its parser) for `chorus` and every subcommand, nested ones too."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from commands(child, f"{name} {sub}")


COMMANDS = dict(commands(build_parser()))


def test_the_commands_are_all_there():
    assert {"chorus check", "chorus serve", "chorus eval", "chorus peer join", "chorus peer earnings",
            "chorus peer keygen", "chorus keygen", "chorus verify", "chorus reputation"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_a_help_text(name):
    missing = [action.option_strings[0] if action.option_strings else action.dest
               for action in COMMANDS[name]._actions
               if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction) and not action.help]
    assert not missing, f"{name}: no help for {missing}"


def test_peer_join_explains_key_pool_and_max_concurrency(capsys):
    from chorus_litellm.cli import main

    with pytest.raises(SystemExit):
        main(["peer", "join", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--key FILE this peer's key from `chorus peer keygen`" in text
    assert "--pool POOL the pool to join" in text
    assert "--max-concurrency N calls each proxy worker sends your server at once" in text


@pytest.fixture
def cost_map_url():
    """A price map server on 127.0.0.1 that counts downloads and has none (404)."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # http.server's name
            hits.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/model_prices.json", hits
    server.shutdown()


def chorus_check(url: str, **env: str) -> subprocess.CompletedProcess:
    """`chorus check` on the shipped config, LiteLLM's price map at `url`, nothing else set."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM_")}
    return subprocess.run([sys.executable, "-m", "chorus_litellm.cli", "check", str(ROOT / "litellm_config.yaml")],
                          capture_output=True, text=True, env={**environ, "LITELLM_MODEL_COST_MAP_URL": url, **env},
                          timeout=120, check=False)


def test_a_chorus_command_downloads_no_price_map(cost_map_url):
    """`chorus check` (and `chorus serve`, which runs it first) imported litellm, which would
    download its price map: the command uses LiteLLM's bundled one, as `litellm-proxy` does."""
    url, hits = cost_map_url
    out = chorus_check(url)
    assert out.returncode == 0, out.stderr
    assert hits == [] and "cost map" not in out.stderr


def test_an_explicit_litellm_local_model_cost_map_is_kept(monkeypatch):
    from chorus_litellm import cli

    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "False")
    assert cli.main(["check", str(ROOT / "litellm_config.yaml")]) == 0
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "False"  # and so for the proxy `chorus serve` starts


CHECK_ALONE = """
import sys
from chorus_litellm.cli import main
code = main(["check", *sys.argv[1:]])
print("litellm imported:", "litellm" in sys.modules)
sys.exit(code)
"""


def test_chorus_check_does_not_import_litellm(tmp_path):
    """Issue 25, point 4: importing litellm for the check cost `chorus serve` 3 s of CPU (5 s
    on a loaded 2-core machine) before the proxy, which imports it again, could start. The
    check reads LiteLLM's provider names from its files and still refuses one of them."""
    def check(config):
        return subprocess.run([sys.executable, "-c", CHECK_ALONE, str(config)], capture_output=True, text=True,
                              timeout=120, check=False)

    shipped = check(ROOT / "litellm_config.yaml")
    assert shipped.returncode == 0, shipped.stderr
    assert "8 fusion profile(s) valid" in shipped.stdout and "litellm imported: False" in shipped.stdout
    text = (ROOT / "litellm_config.yaml").read_text()
    shadowed = tmp_path / "openai.yaml"
    shadowed.write_text(text.replace("provider: fusion", "provider: openai", 1))
    refused = check(shadowed)
    assert refused.returncode == 1 and "litellm imported: False" in refused.stdout
    assert "provider 'openai' is a built-in LiteLLM provider" in refused.stderr


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_a_bad_demo_latency_is_refused_naming_it(capsys, value):
    from chorus_litellm import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--demo", "--demo-latency", value])
    assert exit_info.value.code == 2 and "--demo-latency" in capsys.readouterr().err
