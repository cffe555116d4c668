"""I/O adapters: LiteLLM provider, LiteLLM calls, and (later) embeddings, storage, routes."""
