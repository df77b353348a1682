"""What every benchmark in bench/ shares: the machine it ran on and bench/RESULTS.md.

The scripts run as `python bench/NAME.py`, so this folder is on sys.path and they import
this module as `report`.
"""

from __future__ import annotations

import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def append_results(section: str) -> None:
    """Append a dated section; results accumulate so runs can be compared over time."""
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by the scripts in bench/.\n")
    with RESULTS.open("a") as f:
        f.write(section)
    print(f"\nappended to {RESULTS.relative_to(ROOT)}")
