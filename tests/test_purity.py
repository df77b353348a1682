"""The pure core must not do I/O or read the clock (STYLE: sans-I/O core)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "responsecentre"
PURE = [
    *sorted((PKG / "engine").glob("*.py")),
    PKG / "alarms" / "model.py",
    *sorted(p for p in (PKG / "escalation").glob("*.py") if p.name not in ("timers.py", "notify.py")),
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
