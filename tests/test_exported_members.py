import chorus_litellm


def test_public_api_is_pinned():
    assert set(chorus_litellm.__all__) == {
        "ChorusError", "ConfigError", "ProfileConfig", "QuorumError", "RequestError", "RunError",
        "UpstreamError", "load_profiles", "proxy_handler", "register",
    }
    for name in chorus_litellm.__all__:
        if name != "proxy_handler":  # built lazily inside the proxy
            assert hasattr(chorus_litellm, name)
