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
Several workers (`--num_workers` above 1) each import the proxy again: each is a spawned
process that first imports this module as `__mp_main__` (multiprocessing's spawn re-imports
the parent's main module), so the same paused import happens there, before uvicorn loads
the app it has just imported.
"""

from __future__ import annotations

import gc
import sys


def import_proxy() -> None:
    """LiteLLM's command line and proxy, imported with the collector paused, then frozen."""
    gc.disable()
    try:
        from litellm import run_server  # noqa: F401 - its command line (litellm/proxy/proxy_cli.py)
        import litellm.proxy.proxy_server  # noqa: F401 - what run_server imports first, imported here
    finally:
        gc.enable()
    gc.freeze()


def main() -> None:
    import_proxy()
    from litellm import run_server

    sys.exit(run_server(prog_name="litellm"))  # a click command: its usage lines name `litellm`


if __name__ == "__main__":
    main()
elif __name__ == "__mp_main__":  # a worker spawned by the proxy (uvicorn's --workers)
    import_proxy()
