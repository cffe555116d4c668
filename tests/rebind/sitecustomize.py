"""A rebinding resolver for one test proxy (tests/test_e2e_peer_redirects.py): on its
PYTHONPATH, this makes every resolver in the process (LiteLLM's, httpx's, the guard's)
answer the name `rebind.test` with the address written in CHORUS_TEST_REBIND_FILE at that
moment, so the test moves the name from an allowed address to a refused one, as a DNS
server that rebinds would. Inert without that variable."""

import os
import socket

_real = socket.getaddrinfo
_FILE = os.environ.get("CHORUS_TEST_REBIND_FILE")


def _getaddrinfo(host, port, *args, **kwargs):
    if _FILE and host in ("rebind.test", b"rebind.test"):
        with open(_FILE, encoding="utf-8") as fh:
            host = fh.read().strip()
    return _real(host, port, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo
