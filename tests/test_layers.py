"""The layers, enforced: every import in the package is read (module level and inside functions)
and checked against who may import what. A new upward import fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "r1chat"

# Domain modules: what the TUI, `ask`, `eval` and the tests share. No UI library, no commands.
DOMAIN = {
    "bench",
    "config",
    "conversation",
    "endings",
    "engine",
    "errors",
    "gguf_header",
    "hardware",
    "history",
    "loading",
    "models",
    "prompts",
    "reasoning",
    "sampling",
    "sanitize",
    "scripted",
    "turn",
}
UI_LIBRARIES = ("textual", "rich")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, absolute, wherever in the file the import stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
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


MODULES = {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_walk_sees_the_whole_package() -> None:
    assert {"r1chat.cli", "r1chat.tui.app", "r1chat.commands.ask", "r1chat.engine"} <= set(MODULES)
    assert "r1chat.commands.ask" in MODULES["r1chat.cli"]


def test_only_main_imports_the_command_line_wiring() -> None:
    importers = {name for name, found in MODULES.items() if "r1chat.cli" in found}
    assert importers == {"r1chat.__main__"}


@pytest.mark.parametrize("name", sorted(f"r1chat.{m}" for m in DOMAIN))
def test_domain_modules_import_no_ui_and_no_commands(name: str) -> None:
    bad = {
        m
        for m in MODULES[name]
        if m.split(".")[0] in UI_LIBRARIES
        or m.startswith(
            ("r1chat.cli", "r1chat.commands", "r1chat.tui", "r1chat.render", "r1chat.markdown")
        )
    }
    assert not bad, f"{name} imports {sorted(bad)}"


def test_the_tui_never_reaches_for_commands_or_llama_cpp() -> None:
    for name, found in MODULES.items():
        if name.startswith("r1chat.tui"):
            bad = {m for m in found if m.startswith(("r1chat.cli", "r1chat.commands", "llama_cpp"))}
            assert not bad, f"{name} imports {sorted(bad)}"


def test_only_the_engine_and_the_bench_drive_llama_cpp() -> None:
    users = {
        name
        for name, found in MODULES.items()
        if any(m == "llama_cpp" or m.startswith("llama_cpp.") for m in found)
    }
    assert users <= {"r1chat.engine"}, users


def test_commands_do_not_import_each_other_except_shared_helpers() -> None:
    shared = (
        "r1chat.commands.errors",
        "r1chat.commands.options",
        "r1chat.commands.process",
        "r1chat.commands.sub_app",
        "r1chat.commands.spinner",
        "r1chat.commands.ask_many",  # ask's --samples output, a part of ask
    )
    for name, found in MODULES.items():
        if name.startswith("r1chat.commands."):
            others = {
                m for m in found if m.startswith("r1chat.commands.") and not m.startswith(shared)
            }
            assert not others, f"{name} imports {sorted(others)}"
