"""`python -m chorus_litellm.gateway.proxy_command ARGS`: LiteLLM's `litellm` command with ARGS, the
way `chorus serve` runs the proxy, with Python's garbage collector paused while it imports
LiteLLM's proxy.

That import makes about a million objects and almost no garbage (some 2,500 collectable
objects), yet the collector, run after every 700 new objects and now and then over the whole
growing heap, walks them again and again: paused, the import takes 4.1-4.8 s of CPU instead
of 5.9-6.9 s on the project's 2-core machine (the largest part of the time `chorus serve --demo`
takes to its first answer, docs/embeddings.md "First start"). The command then runs as
`litellm` would, having imported the same modules in the same order (its command line,
which reads `.env`, then its proxy, the first thing `run_server` imports). What the import
made is frozen (`gc.freeze`): it lives as long as the process, and later collections skip it.
Several workers (`--num_workers` above 1) each import the proxy again, without the pause.
"""

from __future__ import annotations

import gc
import sys


def main() -> None:
    gc.disable()
    try:
        from litellm import run_server  # its command line (litellm/proxy/proxy_cli.py)
        import litellm.proxy.proxy_server  # noqa: F401 - what run_server imports first, imported here
    finally:
        gc.enable()
    gc.freeze()
    sys.exit(run_server(prog_name="litellm"))  # a click command: its usage lines name `litellm`


if __name__ == "__main__":
    main()
