"""`responsecentre demo`, the main command: it starts everything, says where, and Ctrl-C
stops everything it started."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from responsecentre.servers import free_port
from tests.service import ROOT


def _processes(marker: Path | str) -> dict[int, str]:
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(marker) in cmdline and int(pid) != os.getpid():
            found[int(pid)] = cmdline
    return found


def processes_under(marker: Path | str) -> list[str]:
    """Command lines of running processes that mention `marker` (our servers' dirs, the
    simulator's broker URL)."""
    return list(_processes(marker).values())


def kill_processes_under(marker: Path | str) -> None:
    """After a failed test: nothing of ours may outlive it."""
    for pid in _processes(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_demo_starts_everything_prints_where_and_ctrl_c_stops_it_all(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RC_")}
    env["NUMBA_CACHE_DIR"] = str(ROOT / ".cache" / "numba")
    out = (tmp_path / "demo.out").open("w+b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "responsecentre", "demo", "--data-dir", str(data), "--port", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env=env,
    )
    sim = ""
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline and "logins" not in text:
            assert proc.poll() is None, Path(out.name).read_text()
            time.sleep(0.1)
            text = Path(out.name).read_text()
        assert f"http://127.0.0.1:{port}/console" in text
        broker = re.search(r"mqtt://127\.0\.0\.1:(\d+)", text)
        assert broker and re.search(r"redis://127\.0\.0\.1:\d+", text)
        sim = f"--broker mqtt://127.0.0.1:{broker.group(1)} "
        assert "operator / operator-demo" in text and "mosquitto_pub" in text
        ready = False
        while time.monotonic() < deadline and not ready:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.1)
        assert ready
        r = httpx.get(f"http://127.0.0.1:{port}/api/devices", auth=("operator", "operator-demo"), timeout=5)
        assert len(r.json()["devices"]) >= 80  # the 20 demo homes
        statuses = 0.0
        while time.monotonic() < deadline and statuses < 80:  # the simulator's retained statuses
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            found = re.search(r"^responsecentre_device_statuses_total (\S+)$", metrics, re.M)
            statuses = float(found.group(1)) if found else 0.0
            time.sleep(0.1)
        assert statuses >= 80
        assert "responsecentre_events_rejected_total{" not in metrics  # the simulator speaks the contract
        assert len(processes_under(data)) >= 2  # our own mosquitto and redis-server
        assert any(" sim " in p for p in processes_under(sim)), "the simulator is not running"
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(30) == 0
        time.sleep(0.2)
        assert processes_under(data) == [] and processes_under(sim) == [], "demo left processes running"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # let the demo stop what it started
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        kill_processes_under(data)
        if sim:
            kill_processes_under(sim)
        out.close()
