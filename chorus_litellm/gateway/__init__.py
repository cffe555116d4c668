"""The LiteLLM glue: the custom provider, inner calls through the proxy's Router, the
forward leg, headers, routes, the composition root (`app.py`) and the proxy command.
Internal: the public entry points are `chorus_litellm.proxy_handler` and `register()`."""
