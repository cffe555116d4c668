"""The fake upstream as a server the proxies' connection pools can trust."""

import http.client
import time
from urllib.parse import urlsplit


def health(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/health")
    reply = conn.getresponse()
    reply.read()
    return reply.status


def test_an_idle_connection_stays_open_longer_than_clients_keep_one(upstream):
    """LiteLLM's clients keep an idle connection for reuse (aiohttp 15 s, httpx 5 s); uvicorn
    closed one after 5 s idle, and a call sent on it as the close landed failed with
    "Connection error" (clean-clone CI: two seats of one run at once, a missed quorum). The
    upstream now keeps idle connections 75 s, so the client side always closes first."""
    url = urlsplit(upstream)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        assert health(conn) == 200
        sock = conn.sock
        time.sleep(6.5)  # idle past uvicorn's default keep-alive
        assert health(conn) == 200 and conn.sock is sock, "the upstream closed an idle connection"
    finally:
        conn.close()
