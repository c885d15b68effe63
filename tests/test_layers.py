"""The layers, enforced: every import in the package is read (module level, inside functions and
under TYPE_CHECKING) and checked against who may import what. A new upward import, a cycle, a
reach into an engine's insides or a second decode path fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "r1chat"

# Everything outside these is domain: what the TUI, `ask`, `eval` and the tests share.
FRONT_ENDS = ("r1chat.tui", "r1chat.commands", "r1chat.cli", "r1chat.__main__")
PRESENTATION = ("r1chat.render", "r1chat.markdown", "r1chat.widewrap")
UI_LIBRARIES = ("textual", "rich")
ENGINES = "r1chat.engines"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def imports(path: Path, tree: ast.Module) -> set[str]:
    """Every module `path` imports, absolute, wherever in the file the import stands."""
    package = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


TREES = {
    module_name(p): (p, ast.parse(p.read_text(encoding="utf-8"))) for p in PACKAGE.rglob("*.py")
}
MODULES = {name: imports(p, tree) for name, (p, tree) in sorted(TREES.items())}
DOMAIN = sorted(n for n in MODULES if not within(n, FRONT_ENDS + PRESENTATION))


def test_the_walk_sees_the_whole_package() -> None:
    assert {"r1chat.cli", "r1chat.tui.app", "r1chat.commands.ask", "r1chat.engines.llama"} <= set(
        MODULES
    )
    assert "r1chat.commands.ask" in MODULES["r1chat.cli"]
    # The deny-list leaves the domain what it should: a new module is domain by default.
    assert {"r1chat.conversation", "r1chat.many", "r1chat.engines.batch"} <= set(DOMAIN)
    assert not {n for n in DOMAIN if within(n, ("r1chat.tui", "r1chat.commands"))}


def test_only_main_imports_the_command_line_wiring() -> None:
    importers = {name for name, found in MODULES.items() if "r1chat.cli" in found}
    assert importers == {"r1chat.__main__"}


@pytest.mark.parametrize("name", DOMAIN)
def test_domain_modules_import_no_ui_and_no_front_end(name: str) -> None:
    bad = {
        m
        for m in MODULES[name]
        if m.split(".")[0] in UI_LIBRARIES or within(m, FRONT_ENDS + PRESENTATION)
    }
    assert not bad, f"{name} imports {sorted(bad)}"


def test_the_tui_never_reaches_for_commands_or_llama_cpp() -> None:
    for name, found in MODULES.items():
        if within(name, "r1chat.tui"):
            bad = {m for m in found if within(m, ("r1chat.cli", "r1chat.commands", "llama_cpp"))}
            assert not bad, f"{name} imports {sorted(bad)}"


def test_only_the_engines_import_llama_cpp() -> None:
    users = {name for name, found in MODULES.items() if any(within(m, "llama_cpp") for m in found)}
    assert users and all(within(u, ENGINES) for u in users), users


def test_only_the_sidebar_talks_to_the_history_store_inside_the_tui() -> None:
    users = {
        name
        for name, found in MODULES.items()
        if within(name, "r1chat.tui") and any(within(m, "r1chat.history") for m in found)
    }
    assert users == {"r1chat.tui.widgets.sidebar"}, users


def _private_names_of_engines() -> set[str]:
    """Attributes and methods the engines' classes keep to themselves (`self._x`)."""
    names: set[str] = set()
    for name, (_, tree) in TREES.items():
        if not within(name, ENGINES):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for inner in ast.walk(node):
                    if (
                        isinstance(inner, ast.Attribute)
                        and isinstance(inner.value, ast.Name)
                        and inner.value.id == "self"
                        and inner.attr.startswith("_")
                        and not inner.attr.startswith("__")
                    ):
                        names.add(inner.attr)
    return names


def test_no_module_outside_the_engines_reads_their_insides() -> None:
    private = _private_names_of_engines()
    assert {"_ll", "_ctx", "_model", "_vocab"} <= private
    reach: list[str] = []
    for name, (_, tree) in TREES.items():
        if within(name, ENGINES):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in private
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                reach.append(f"{name}:{node.lineno} .{node.attr}")
    assert not reach, reach


def test_no_code_asks_which_engine_it_has() -> None:
    """Capabilities are protocols (`DecodesTogether`), not a check for one engine class."""
    engine_classes = {"LlamaEngine", "RemoteEngine", "ScriptedEngine"}
    asks: list[str] = []
    for name, (_, tree) in TREES.items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("isinstance", "issubclass")
                and len(node.args) == 2
            ):
                mentioned = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                mentioned |= {
                    n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)
                }
                if mentioned & engine_classes:
                    asks.append(f"{name}:{node.lineno}")
    assert not asks, asks


def test_the_package_has_no_import_cycles() -> None:
    graph = {m: {i for i in found if i in MODULES and i != m} for m, found in MODULES.items()}
    # Tarjan's strongly connected components: any of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


# What they hold now: the App ~30 actions of one to six lines and the lifecycle handlers; the
# view the turns and the switches between them. A feature that needs more here has a home
# elsewhere first (Conversation, LiveTurn, a widget of its own).
SIZE_LIMITS = {"tui/app.py": 440, "tui/widgets/chat.py": 380}


def test_the_tui_control_classes_stay_tables_of_contents() -> None:
    """The app and the conversation view show; Conversation decides (STYLE.md)."""
    for rel, limit in SIZE_LIMITS.items():
        lines = (PACKAGE / rel).read_text(encoding="utf-8").count("\n")
        assert lines <= limit, f"{rel} has {lines} lines"


def test_commands_do_not_import_each_other_except_shared_helpers() -> None:
    shared = (
        "r1chat.commands.errors",
        "r1chat.commands.options",
        "r1chat.commands.process",
        "r1chat.commands.sub_app",
        "r1chat.commands.spinner",
        "r1chat.commands.table",  # the header row of `history list` and `models list`
        "r1chat.commands.ask_many",  # ask's --samples output, a part of ask
    )
    for name, found in MODULES.items():
        if name.startswith("r1chat.commands."):
            others = {
                m for m in found if m.startswith("r1chat.commands.") and not m.startswith(shared)
            }
            assert not others, f"{name} imports {sorted(others)}"
