"""The demo and the simulator as processes: whatever ends the demo ends all it started, a
data directory serves one demo at a time, a dead part stops the demo instead of leaving it
"running" half-dead, and the simulator stops promptly on SIGTERM even without a broker.

Real processes and signals throughout (only on 127.0.0.1); every wait is bounded and
waits for something observable (a line, a pid gone), never a fixed sleep."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from responsecentre.demo import PIDS_FILE, _start_token, stop_leftovers
from responsecentre.servers import PARENT_DEATH_SIGNAL_SUPPORTED
from tests.servers import Mosquitto
from tests.service import ROOT
from tests.test_demo import alive, demo, demo_environ, wait_until_gone

needs_pdeathsig = pytest.mark.skipif(not PARENT_DEATH_SIGNAL_SUPPORTED, reason="Linux's PR_SET_PDEATHSIG")


def _by_name(children: dict[int, str]) -> dict[str, int]:
    """mosquitto, redis-server and the simulator (a python) by name; exactly those three."""
    named = {("sim" if name.startswith("python") else name): pid for pid, name in children.items()}
    assert set(named) == {"mosquitto", "redis-server", "sim"}, children
    return named


@needs_pdeathsig
def test_sigkill_of_the_demo_takes_its_children_and_the_next_demo_takes_over(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    with demo(data) as first:
        first.wait_running()
        children = _by_name(first.children())
        first.proc.kill()
        first.proc.wait(5)
        assert wait_until_gone(list(children.values()), 5) == [], f"left running: {children}"
    with demo(data) as second:  # the lock died with the first demo
        text = second.wait_running()
        assert "left running by an earlier demo" not in text  # the kernel had stopped them all
        assert set(_by_name(second.children()).values()).isdisjoint(children.values())


def test_a_second_demo_on_the_same_data_dir_refuses_and_sighup_stops_the_first(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    with demo(data) as first:
        first.wait_running()
        children = list(_by_name(first.children()).values())
        with demo(data) as second:
            assert second.proc.wait(30) == 1
            assert f"another responsecentre demo (pid {first.proc.pid}) is running on {data}" in second.output()
            assert second.children() == {}
        assert all(alive(pid) for pid in children), "the refused demo touched the first one's processes"
        first.proc.send_signal(signal.SIGHUP)  # the terminal was closed
        assert first.proc.wait(30) == 0
        assert "responsecentre demo: stopping" in first.output()
        assert wait_until_gone(children, 5) == []
    assert not (data / PIDS_FILE).exists()


@pytest.mark.parametrize("victim", ["redis-server", "mosquitto"])
def test_a_dead_server_stops_the_demo_with_a_clear_message(tmp_path: Path, victim: str) -> None:
    data = tmp_path / "demo"
    with demo(data) as d:
        d.wait_running()
        children = _by_name(d.children())
        signal_sent = time.monotonic()
        subprocess.run(["kill", "-KILL", str(children[victim])], check=True)
        assert d.proc.wait(20) == 1
        assert time.monotonic() - signal_sent < 10
        assert f"{victim} (pid {children[victim]}) was killed by SIGKILL while the demo was running" in d.output()
        assert wait_until_gone(list(children.values()), 5) == []


def test_a_simulator_that_exits_early_stops_the_demo_before_it_claims_to_run(tmp_path: Path) -> None:
    homes = tmp_path / "homes" / "homes.yaml"  # no catalog.yaml beside it: the service copes, the simulator not
    homes.parent.mkdir()
    homes.write_text((ROOT / "devices" / "homes.yaml").read_text())
    with demo(tmp_path / "demo", "--homes", str(homes)) as d:
        assert d.proc.wait(30) == 1
        text = d.output()
        assert "catalog.yaml" in text  # the simulator's own reason
        assert "the simulator" in text and "exited with status 2 while the demo was starting" in text
        assert "demo is running" not in text


def test_stop_leftovers_stops_what_a_dead_demo_recorded_and_only_that(tmp_path: Path) -> None:
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    innocent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        token = _start_token(leftover.pid)
        assert token
        (tmp_path / PIDS_FILE).write_text(
            f"{leftover.pid}\t{token}\tredis-server\n{innocent.pid}\tnot-its-start-time\tmosquitto\n"
        )
        said: list[str] = []
        earlier = "left running by an earlier demo on"
        stop_leftovers(tmp_path, said.append)
        assert leftover.wait(5) == -signal.SIGTERM
        assert innocent.poll() is None  # same pid file, but not the process that was recorded
        assert said == [f"responsecentre demo: stopping redis-server (pid {leftover.pid}), {earlier} {tmp_path}"]
        assert not (tmp_path / PIDS_FILE).exists()
    finally:
        for proc in (leftover, innocent):
            proc.kill()
            proc.wait(5)


def _sim(broker_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "responsecentre", "sim", "--homes", "2", "--broker", broker_url, "--rate", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=demo_environ(),
    )


def _stops_on_sigterm(sim: subprocess.Popen[str]) -> str:
    sent = time.monotonic()
    sim.send_signal(signal.SIGTERM)
    try:
        code = sim.wait(10)
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait(5)
    assert sim.stdout is not None
    rest = sim.stdout.read()
    assert code == 0, rest
    assert time.monotonic() - sent < 3, f"took {time.monotonic() - sent:.1f} s"
    return rest


def test_the_simulator_stops_on_sigterm_promptly_after_its_broker_died(tmp_path: Path) -> None:
    broker = Mosquitto(workdir=tmp_path / "mosquitto")
    broker.start()
    sim = _sim(broker.url_for(broker.harness()))
    try:
        assert sim.stdout is not None
        assert " devices -> " in sim.stdout.readline()  # connected (a line, so bounded by the sim's own timeouts)
        broker.kill()
        assert "disconnected from the broker" in sim.stdout.readline()
        assert "done after" in _stops_on_sigterm(sim)
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait(5)
        broker.stop()


def test_the_simulator_stops_on_sigterm_promptly_while_the_broker_does_not_answer() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never sends a CONNACK
        silent.settimeout(20)
        sim = _sim(f"mqtt://127.0.0.1:{silent.getsockname()[1]}")
        try:
            conn, _ = silent.accept()  # the simulator is waiting for the broker now
            with conn:
                assert "stopped before" in _stops_on_sigterm(sim)
        finally:
            if sim.poll() is None:
                sim.kill()
                sim.wait(5)
