"""The package's shape, drawn from its imports (every import, lazy and type-only ones
included): no import circles, and no arrow from the fusion core to an adapter (issue 24).
The outer ring (the command lines, the SDK entry, evaluation, the demo servers) may import
anything; adapters import the core, never the other way."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "chorus_litellm"
# The outer ring: command lines, the SDK entry, test doubles, evaluation and the demo servers.
OUTER = ("chorus_litellm", "chorus_litellm.cli", "chorus_litellm.sdk", "chorus_litellm.settings",
         "chorus_litellm.testing", "chorus_litellm.market.cli", "chorus_litellm.gateway.startup",
         "chorus_litellm.gateway.proxy_command", "chorus_litellm.demo", "chorus_litellm.evaluation")
# Adapters: modules that do I/O (LiteLLM, storage, the network, signing keys). Every other
# module (core/, settlement.finish and .keys, market.peers, observe.allowlist) is the core.
ADAPTERS = ("chorus_litellm.gateway", "chorus_litellm.storage", "chorus_litellm.observe",
            "chorus_litellm.market.sync", "chorus_litellm.market.routes", "chorus_litellm.settlement.signing")
PURE = ("chorus_litellm.observe.allowlist",)


def layer(module: str) -> str:
    def under(prefixes: tuple[str, ...]) -> bool:
        return any(module == p or module.startswith(p + ".") for p in prefixes)
    if under(OUTER[1:]) or module == OUTER[0]:
        return "outer"
    return "adapter" if under(ADAPTERS) and not under(PURE) else "core"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "ui" in path.relative_to(PACKAGE).parts[:1]:
            continue  # the page's dev harness (not shipped)
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a `from pkg import name` of a submodule
    is an arrow to that submodule, not to the package)."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                targets = subs if subs and len(subs) == len(node.names) else [base, *subs]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_circles():
    assert circles(imports()) == []


def test_no_arrow_runs_from_the_core_to_an_adapter():
    graph = imports()
    core = [m for m in graph if layer(m) == "core"]
    assert "chorus_litellm.core.pipeline" in core and "chorus_litellm.core.stages.debate" in core
    assert all(layer(m) == "core" for m in graph if m.startswith("chorus_litellm.core"))
    wrong = {m: sorted(t for t in graph[m] if layer(t) == "adapter") for m in core}
    assert {m: t for m, t in wrong.items() if t} == {}


def test_the_fusion_core_folder_imports_nothing_above_it_but_the_marketplaces_nouns():
    graph = imports()
    out = {(m, t) for m in graph if m.startswith("chorus_litellm.core.") for t in graph[m]
           if not t.startswith("chorus_litellm.core")}
    assert out == {("chorus_litellm.core.stages.draw", "chorus_litellm.market.peers")}


def test_the_provider_is_translation_only():
    """Issue 24.4: the wiring (app.py), single flight (runs.py), the shapes (translate.py)
    and the sync bridge (sync_bridge.py) live beside it; what is left stays small."""
    lines = (PACKAGE / "gateway" / "provider.py").read_text().count("\n")
    assert lines < 250, f"gateway/provider.py has {lines} lines: move what is not translation out"


def test_the_drawing_sees_a_circle_and_an_inward_arrow_when_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert "chorus_litellm.storage.store" in imports()["chorus_litellm.storage.backends"]


def test_a_warning_raised_by_the_package_fails_the_test():
    import warnings

    import pytest

    with pytest.raises(DeprecationWarning, match="ours"):
        warnings.warn_explicit("ours", DeprecationWarning, "chorus_litellm/core/pipeline.py", 1,
                               module="chorus_litellm.core.pipeline")
    with warnings.catch_warnings(record=True) as seen:  # another package's warning is not ours to fail on
        warnings.simplefilter("default")
        warnings.filterwarnings("error", module=r"chorus_litellm(\..*)?$")
        warnings.warn_explicit("theirs", DeprecationWarning, "litellm/utils.py", 1, module="litellm.utils")
    assert [str(w.message) for w in seen] == ["theirs"]
