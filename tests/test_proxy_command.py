"""How `chorus serve` runs LiteLLM's proxy: its `litellm` command, with the garbage
collector paused while LiteLLM's proxy is imported (issue 25, point 4: that import is the
largest part of the demo's time to its first answer)."""

import gc
import subprocess
import sys

import pytest


def test_it_is_the_litellm_command():
    out = subprocess.run([sys.executable, "-P", "-m", "chorus_litellm.gateway.proxy_command", "--help"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage: litellm [OPTIONS]") and "--num_workers" in out.stdout


def test_it_imports_the_proxy_with_the_collector_paused_then_runs_the_command(monkeypatch):
    import litellm

    from chorus_litellm.gateway import proxy_command

    seen = {}

    def run_server(prog_name):
        seen.update(proxy="litellm.proxy.proxy_server" in sys.modules, gc_enabled=gc.isenabled(), prog=prog_name)
        return 0

    monkeypatch.setattr(litellm, "run_server", run_server)
    monkeypatch.setattr(gc, "freeze", lambda: seen.setdefault("frozen", True))
    disabled = []
    real_disable = gc.disable
    monkeypatch.setattr(gc, "disable", lambda: (disabled.append(True), real_disable()))
    with pytest.raises(SystemExit) as exit_info:
        proxy_command.main()
    assert exit_info.value.code == 0
    assert disabled and seen == {"proxy": True, "gc_enabled": True, "prog": "litellm", "frozen": True}
