import logging

import pytest

from chorus_litellm.gateway.compat import is_builtin_provider
from chorus_litellm.core.config import load_profiles, parse_profile, provider_of
from chorus_litellm.core.errors import ConfigError
from tests.factories import BASE, profile


def entry(name, chorus):
    return {"model_name": f"fusion/{name}", "litellm_params": {"model": f"fusion/{name}"},
            "model_info": {"chorus": chorus}}


def models(*names):
    return [{"model_name": n, "litellm_params": {"model": f"openai/{n}"}} for n in names]


def test_defaults_and_quorum():
    p = profile(panel={"members": ["model-a", "model-b", "model-c", "model-d"]})
    assert p.panel.quorum == 3  # majority by default
    assert p.router.policy == "always_fuse"
    assert profile().panel.quorum == 2


@pytest.mark.parametrize(
    "override, message",
    [
        ({"panel": {"members": ["a", "b"], "min_quorum": 3}}, "panel.min_quorum"),
        ({"panel": {"members": ["a"], "timeout_s": -1}}, "panel.timeout_s"),
        ({"panel": {"members": []}}, "panel: set members, self_moa or pool"),
        ({"panel": {"members": ["a"], "self_moa": {"model": "a"}}}, "panel.self_moa: cannot be mixed"),
        ({"panel": {"self_moa": {"model": "a"}, "pool": "gpu", "seats": 2}}, "panel.self_moa: cannot be mixed"),
        ({"panel": {"pool": "gpu"}}, "panel.seats: pool seats need both pool and seats"),
        ({"panel": {"members": ["a"], "seats": 2}}, "panel.seats: pool seats need both pool and seats"),
        ({"panel": {"pool": "GPU pool", "seats": 2}}, "panel.pool: String should match pattern"),
        ({"panel": {"pool": "gpu", "seats": 2, "select": "best"}}, "panel.select: Input should be 'reputation'"),
        ({"panel": {"pool": "gpu", "seats": 2, "min_quorum": 4, "members": ["a"]}},
         "panel.min_quorum: 4 is more than the 3 seats"),
        ({"panel": {"members": ["a"], "bogus": 1}}, "panel.bogus"),
        ({"router": {"policy": "auto"}}, "router.single_model: required"),
        ({"router": {"policy": "sometimes"}}, "router.policy"),
        ({"aggregator": {"judge": "j"}}, "aggregator.synthesizer"),
        ({"panel": {"self_moa": {"model": "a", "samples": 1}}}, "panel.self_moa.samples"),
        ({"router": {"tools": "sometimes"}}, "router.tools"),
        ({"panel": {"members": ["a", "b"], "web_search": True, "web_search_context": "huge"}},
         "panel.web_search_context"),
        ({"limits": {"max_cost_usd": -1}}, "limits.max_cost_usd"),
        ({"limits": {"assumed_max_tokens": 0}}, "limits.assumed_max_tokens"),
    ],
)
def test_errors_name_profile_and_field(override, message):
    with pytest.raises(ConfigError) as err:
        parse_profile("research", {**BASE, **override})
    assert "profile 'research'" in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "override, field",
    [
        ({"panel": {"members": ["model-a", "fusion/other"]}}, "panel.members[1].model"),
        ({"aggregator": {"judge": "fusion/x", "synthesizer": "w"}}, "aggregator.judge"),
        ({"router": {"policy": "never_fuse", "single_model": "fusion/x"}}, "router.single_model"),
        ({"panel": {"self_moa": {"model": "fusion/x"}}}, "panel.self_moa.model"),
    ],
)
def test_fusion_models_inside_a_profile_are_recursion(override, field):
    with pytest.raises(ConfigError, match="recursion") as err:
        parse_profile("research", {**BASE, **override})
    assert field in str(err.value)


def test_synthesizer_in_panel_warns_or_errors(caplog):
    raw = {**BASE, "aggregator": {"judge": "judge", "synthesizer": "model-a"}}
    with caplog.at_level(logging.WARNING, logger="chorus_litellm"):
        parse_profile("research", raw)
    assert "also a panel member" in caplog.text
    raw["aggregator"]["synthesizer_in_panel"] = "error"
    with pytest.raises(ConfigError, match="aggregator.synthesizer"):
        parse_profile("research", raw)


def test_load_profiles_checks_models_exist():
    cfg = {"model_list": [*models("model-a", "model-b", "model-c", "judge"), entry("research", BASE)]}
    with pytest.raises(ConfigError, match=r"aggregator.synthesizer: 'writer' is not a model_name"):
        load_profiles(cfg)
    cfg["model_list"] += models("writer")
    assert set(load_profiles(cfg)) == {"research"}


def test_load_profiles_missing_block_and_wildcards():
    bad = {"model_name": "fusion/x", "litellm_params": {"model": "fusion/x"}}
    with pytest.raises(ConfigError, match="profile 'x': model_info.chorus is missing"):
        load_profiles({"model_list": [bad]})
    wildcard = {"model_list": [{"model_name": "*", "litellm_params": {"model": "openai/*"}}, entry("r", BASE)]}
    assert "r" in load_profiles(wildcard)


OURS = "chorus_litellm.proxy_handler"


def registered(provider, *entries, handler=OURS):
    return {"model_list": [*models("model-a", "model-b", "model-c", "judge", "writer"), *entries],
            "litellm_settings": {"custom_provider_map": [{"provider": "other", "custom_handler": "x.y"},
                                                         {"provider": provider, "custom_handler": handler}]}}


def test_the_provider_name_comes_from_our_custom_provider_map_entry():
    chorus_entry = {**entry("research", BASE), "litellm_params": {"model": "chorus/research"}}
    cfg = registered("chorus", chorus_entry, entry("stale", BASE))
    assert provider_of(cfg) == "chorus"
    assert set(load_profiles(cfg, is_builtin=is_builtin_provider)) == {"research"}  # fusion/stale is not ours
    assert provider_of({"model_list": []}) == "fusion"  # SDK use with no map: the examples' name
    # a profile that names the alias of another profile, under any provider name, is recursion
    loop = {**BASE, "panel": {"members": ["model-a", "fusion/research"]}}
    with pytest.raises(ConfigError, match=r"panel.members\[1\].model: 'fusion/research' is a fusion model.*recursion"):
        load_profiles(registered("chorus", chorus_entry, {**entry("loop", loop), "litellm_params": {"model": "chorus/loop"}}))


def test_a_provider_name_litellm_would_shadow_is_refused_naming_the_fix():
    openai_entry = {**entry("research", BASE), "litellm_params": {"model": "openai/research"}}
    with pytest.raises(ConfigError, match=r"provider 'openai' is a built-in LiteLLM provider.*provider: chorus"):
        load_profiles(registered("openai", openai_entry), is_builtin=is_builtin_provider)
    with pytest.raises(ConfigError, match=r"provider 'litellm' is LiteLLM's own fusion"):
        load_profiles(registered("litellm", entry("research", BASE)), is_builtin=lambda name: False)


def test_litellms_provider_names_read_from_its_files_are_the_ones_it_imports():
    """`chorus check` and `chorus serve` read LiteLLM's provider names from its files instead
    of importing it (3 s of CPU before the proxy starts); the two must agree on this release."""
    from litellm.types.utils import LlmProviders

    from chorus_litellm.gateway.compat import provider_names_from_source

    try:
        from litellm.llms.openai_like.json_loader import JSONProviderRegistry
        json_defined = set(JSONProviderRegistry.list_providers())
    except ImportError:  # releases before JSON-defined providers
        json_defined = set()
    assert provider_names_from_source() == {p.value for p in LlmProviders} | json_defined
    assert {"openai", "anthropic", "ollama"} <= provider_names_from_source()
    assert not {"fusion", "chorus"} & provider_names_from_source()


def test_a_model_name_both_chorus_and_litellm_native_fusion_claim_is_refused():
    native = {"model_name": "fusion/research", "litellm_params": {"model": "fusion_router"},
              "fusion_router_config": {"outer_model": "model-a"}}
    with pytest.raises(ConfigError, match=r"'fusion/research' is both a chorus profile \(fusion/...\) and a LiteLLM-native"):
        load_profiles(registered("fusion", entry("research", BASE), native), is_builtin=is_builtin_provider)
    other = {**native, "model_name": "fusion/general"}
    assert set(load_profiles(registered("fusion", entry("research", BASE), other), is_builtin=is_builtin_provider)) \
        == {"research"}


@pytest.mark.parametrize("providers, message", [
    (["chorus", "fusion"], r"registered under 2 provider names \(chorus, fusion\)"),
    (["Fusion Models"], r"provider 'Fusion Models': use lower-case letters"),
])
def test_our_provider_entries_must_be_one_usable_name(providers, message):
    cfg = {"litellm_settings": {"custom_provider_map": [{"provider": p, "custom_handler": OURS} for p in providers]}}
    with pytest.raises(ConfigError, match=message):
        provider_of(cfg)


def test_shipped_config_is_valid():
    from chorus_litellm.core.config import read_config_file

    profiles = load_profiles(read_config_file("litellm_config.yaml"))
    assert {"research", "self-moa", "debate", "consensus", "market"} <= set(profiles)
    assert profiles["market"].panel.pool == "demo" and profiles["market"].panel.seat_count == 3
    presets = {n: profiles[f"consensus-{n}"].debate for n in ("fast", "balanced", "paranoid")}
    assert {p.revote for p in presets.values()} == {"dissenters"}
    assert [p.max_rounds for p in presets.values()] == [1, 3, 5] and presets["paranoid"].strict_unanimity


@pytest.mark.parametrize(
    "override, field",
    [
        ({"settlement": {"default_bounty": {"amount": 5, "currency": "XXX"}}}, "settlement.default_bounty.currency"),
        ({"settlement": {"default_bounty": {"amount": -1}}}, "settlement.default_bounty.amount"),
        ({"storage": {"transcript_ttl_s": 5}}, "storage.transcript_ttl_s"),
        ({"debate": {"protocol": "chat"}}, "debate.protocol"),
        ({"debate": {"max_rounds": 0}}, "debate.max_rounds"),
        ({"panel": {"members": ["a", "b"], "reputation": {"min_score": 2}}}, "panel.reputation.min_score"),
        ({"panel": {"members": ["a", "b"], "early_stop": {"first_wave": 3}}}, "panel.early_stop.first_wave: 3 is more"),
        ({"panel": {"members": ["a", "b"], "early_stop": {"first_wave": 0}}}, "panel.early_stop.first_wave"),
        ({"panel": {"members": ["a", "b"], "early_stop": {"mode": "always"}}}, "panel.early_stop.mode"),
        ({"debate": {"answer_agreement": 0}}, "debate.answer_agreement"),
        ({"debate": {"answer_agreement": 1.5}}, "debate.answer_agreement"),
    ],
)
def test_new_sections_name_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        parse_profile("research", {**BASE, **override})
    assert f"profile 'research': {field}" in str(err.value)


@pytest.mark.parametrize("section,field,value", [
    ("aggregator", "judge_schema", "tiny"),
    ("storage", "events", "sometimes"),
])
def test_the_live_view_and_small_model_settings_are_validated(section, field, value):
    raw = {"panel": {"members": ["a", "b"]}, "aggregator": {"judge": "j", "synthesizer": "w"}}
    raw.setdefault(section, {})[field] = value
    with pytest.raises(ConfigError, match=rf"profile 'x'.*{section}\.{field}"):
        parse_profile("x", raw)


# -- non-finite numbers (issue 23): YAML's .inf / .nan are floats pydantic would take
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
@pytest.mark.parametrize(("section", "field"), [
    ("limits", "max_cost_usd"), ("limits", "run_timeout_s"), ("panel", "timeout_s"), ("panel", "quorum_grace_s"),
    ("router", "threshold"), ("debate", "agreement"),
])
def test_a_non_finite_number_in_the_yaml_config_names_profile_and_field(tmp_path, section, field, value):
    import yaml

    from chorus_litellm.core.config import read_config_file

    chorus = {**BASE, "panel": dict(BASE["panel"]), "router": {"policy": "always_fuse"}}
    chorus.setdefault(section, {})[field] = "VALUE"
    text = yaml.safe_dump({"model_list": [*models("model-a", "model-b", "model-c", "judge", "writer"),
                                          entry("research", chorus)]}).replace("VALUE", value)
    path = tmp_path / "litellm_config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_profiles(read_config_file(str(path)))
    assert f"profile 'research': {section}.{field}" in str(err.value)
    if section == "limits" and field == "max_cost_usd" and value == ".inf":
        assert "finite" in str(err.value)


# -- every problem at once (issue 25): `chorus check` on seven broken profiles showed one
PANEL = {"members": ["model-a", "model-b", "model-c"]}
BROKEN = {  # profile -> (its chorus block, the problems it must report: one line each)
    "quorum": ({**BASE, "panel": {**PANEL, "min_quorum": 9}}, ["panel.min_quorum: 9 is more than the 3 seats"]),
    "nojudge": ({**BASE, "aggregator": {"synthesizer": "writer"}}, ["aggregator.judge: Field required"]),
    "unknown": ({**BASE, "aggregator": {"judge": "nope", "synthesizer": "nada"}},
                ["aggregator.judge: 'nope' is not a model_name", "aggregator.synthesizer: 'nada' is not a model_name"]),
    "fields": ({**BASE, "panel": {**PANEL, "timeout_s": -1}, "router": {"policy": "sometimes"}},
               ["router.policy: Input should be", "panel.timeout_s: Input should be greater than 0"]),
    "missing": (None, ["model_info.chorus is missing"]),
    "recursive": ({**BASE, "panel": {"members": ["model-a", "fusion/fine"]}},
                  ["panel.members[1].model: 'fusion/fine' is a fusion model"]),
    "seats": ({**BASE, "panel": {**PANEL, "min_quorum": 5, "early_stop": {"first_wave": 4}}},
              ["panel.min_quorum: 5 is more than the 3 seats",
               "panel.early_stop.first_wave: 4 is more than the 3 seats"]),
    "sections": ({**BASE, "router": {"tools": "fuse"}, "debate": {"protocol": "consensus"},
                  "panel": {"members": [{"model": "model-a", "persona": "pirate"}, "model-b"]}},
                 ["router.tools: 'fuse' needs the moa or debate protocol", "panel.members[0].persona: 'pirate'"]),
}


def broken_config() -> dict:
    entries = [entry("fine", BASE)]
    for name, (chorus, _) in BROKEN.items():
        entries.append(entry(name, chorus) if chorus is not None else
                       {"model_name": f"fusion/{name}", "litellm_params": {"model": f"fusion/{name}"}})
    return {"model_list": [*models("model-a", "model-b", "model-c", "judge", "writer"), *entries]}


def test_every_problem_in_every_profile_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        load_profiles(broken_config())
    lines = str(err.value).splitlines()
    expected = [(name, problem) for name, (_, problems) in BROKEN.items() for problem in problems]
    assert len(lines) == len(expected) == 12, lines
    for name, problem in expected:
        assert any(line.startswith(f"profile {name!r}: {problem}") for line in lines), (name, problem, lines)
    assert not any("'fine'" in line.split(":")[0] for line in lines)


def test_chorus_check_lists_every_problem_and_exits_1(tmp_path, capsys):
    import yaml

    from chorus_litellm.cli import main

    path = tmp_path / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(broken_config(), sort_keys=False))
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"chorus: {path}: invalid, 12 problem(s)" in err
    assert {name for name in BROKEN} == {name for name in BROKEN if f"profile {name!r}: " in err}
