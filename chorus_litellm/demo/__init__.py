"""Servers for the demo, tests and benchmarks: the fake OpenAI-compatible upstream and its
cast, and a real small model on the CPU. Not used by the proxy's own code path."""
