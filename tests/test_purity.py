"""The pure core must not do I/O or read the clock (STYLE: sans-I/O core)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "responsecentre"
PURE = [
    *sorted((PKG / "engine").glob("*.py")),
    PKG / "alarms" / "model.py",
    *sorted((PKG / "escalation").glob("*.py")),
    PKG / "suppression.py",
]
FORBIDDEN_MODULES = {"asyncio", "redis", "paho", "fastapi", "starlette", "prometheus_client", "socket", "uvicorn"}
FORBIDDEN_CALLS = {("time", "time"), ("time", "monotonic"), ("datetime", "now"), ("datetime", "utcnow")}


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(PKG)))
def test_pure_module_has_no_io_and_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
        ):
            assert (node.func.value.id, node.func.attr) not in FORBIDDEN_CALLS, f"{path.name} reads the clock"


CORE = sorted((PKG / "escalation").glob("*.py"))


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(PKG)))
def test_escalation_core_imports_only_the_core(path: Path) -> None:
    """Imports run one way, from the service down to the core: nothing in `escalation/`
    reaches up into the shell (the desk, the deliveries, the loops, the stores)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("responsecentre"):
            module = node.module or ""
            # The engine's rule language (windows, durations) is pure core too.
            allowed = module.startswith(("responsecentre.escalation", "responsecentre.engine"))
            assert allowed, f"{path.name} imports {module}: the escalation core may import only the core"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert not alias.name.startswith("responsecentre") or alias.name.startswith(
                    "responsecentre.escalation"
                ), f"{path.name} imports {alias.name}"
