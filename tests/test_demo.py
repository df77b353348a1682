"""`responsecentre demo`, the main command: it starts everything, says where, and Ctrl-C
stops everything it started. The helpers here start a demo the way a user does (a process
of its own, no RC_* settings, the shared numba cache); tests/test_demo_processes.py uses
them too."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from responsecentre.servers import free_port
from tests.service import ROOT, metric_sum
from tests.waiting import until_sync

START_TIMEOUT_S = 60.0
_outputs = itertools.count()


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


def _stat(pid: int) -> tuple[str, str, int] | None:
    """(command name, state, parent pid) of a process, None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 1 :].split()
    return name, rest[0], int(rest[1])


def alive(pid: int) -> bool:
    """A process that ended but was not reaped yet (a zombie) is not alive."""
    stat = _stat(pid)
    return stat is not None and stat[1] not in ("Z", "X")


def wait_until_gone(pids: list[int], timeout_s: float) -> list[int]:
    """The pids still alive after waiting up to `timeout_s` for them to end."""
    with contextlib.suppress(AssertionError):
        until_sync(lambda: not any(alive(p) for p in pids), timeout_s, "the processes gone")
    return [p for p in pids if alive(p)]


def demo_environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RC_")}
    env["NUMBA_CACHE_DIR"] = str(ROOT / ".cache" / "numba")
    return env


@dataclass
class Demo:
    """A running `responsecentre demo` process and its output (stdout and stderr)."""

    proc: subprocess.Popen[bytes]
    out: Path
    port: int
    seen: set[int] = field(default_factory=set)

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = START_TIMEOUT_S) -> str:
        """The output once it holds `text`; fails at once if the demo exits first."""

        def shown() -> str | None:
            output = self.output()
            if text in output:
                return output
            assert self.proc.poll() is None, f"the demo exited with {self.proc.returncode}:\n{output}"
            return None

        try:
            return until_sync(shown, timeout_s, f"{text!r} in the demo's output")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None

    def wait_running(self) -> str:
        return self.wait_for("logins")

    def children(self) -> dict[int, str]:
        """The demo's live child processes, pid -> command name."""
        found = {}
        for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
            stat = _stat(pid)
            if stat is not None and stat[2] == self.proc.pid and stat[1] not in ("Z", "X"):
                found[pid] = stat[0]
        self.seen |= set(found)
        return found


@contextlib.contextmanager
def demo(data: Path, *args: str, port: int | None = None) -> Iterator[Demo]:
    """A demo on data dir `data`; on the way out it is stopped (SIGINT, then SIGKILL) and
    every child it had is killed, whatever the test did."""
    port = port or free_port()
    out = data.parent / f"demo-{next(_outputs)}.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "responsecentre", "demo", "--data-dir", str(data), "--port", str(port), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=demo_environ(),
        )
    running = Demo(proc, out, port)
    try:
        yield running
    finally:
        if proc.poll() is None:
            running.children()
            proc.send_signal(signal.SIGINT)  # let the demo stop what it started
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for pid in running.seen:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def check_printed_mqtt_accounts(text: str, port: int, data: Path) -> None:
    """The banner's MQTT accounts work as printed: the device's publishes on its own events
    topic, the integrator logs in over TLS with the printed CA; nobody gets in anonymously."""
    accounts = dict(re.findall(r"^ +(?:simulator|integrator|handset|device) +(\S+) / (\S+)$", text, re.M))
    assert {"rc-sim", "integrator/vestby", "handset/vestby/s-n1", "device/vestby/h01-btn"} <= set(accounts), text
    assert str(data / "mosquitto" / "credentials.json") in text
    tls = re.search(r"mqtts://127\.0\.0\.1:(\d+) +\(CA certificate (\S+)\)", text)
    assert tls and Path(tls.group(2)).is_file(), text

    def connack(user: str | None, tls_port: int | None = None) -> str:
        """The CONNACK's reason; as the device, also the PUBACK's of an event of its own."""
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        answers: list[str] = []
        client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(str(reason))
        client.on_publish = lambda _c, _u, _m, reason, _p: answers.append(str(reason))
        if user is not None:
            client.username_pw_set(user, accounts[user])
        if tls_port is not None:
            client.tls_set(ca_certs=tls.group(2))
        client.connect("127.0.0.1", tls_port or port)
        client.loop_start()
        try:
            until_sync(lambda: answers, 10, f"a CONNACK for {user}")
            if user == "device/vestby/h01-btn":
                payload = b'{"id": "by-hand", "type": "device.heartbeat", "ts": 1795317165120}'
                client.publish("rc/v1/vestby/devices/h01-btn/events", payload, qos=1)
                until_sync(lambda: len(answers) == 2, 10, "the PUBACK")
        finally:
            client.disconnect()
            client.loop_stop()
        return " ".join(answers)

    assert connack(None) == "Not authorized"
    assert connack("device/vestby/h01-btn") == "Success Success"
    assert connack("integrator/vestby", int(tls.group(1))) == "Success"


def test_demo_starts_everything_prints_where_and_ctrl_c_stops_it_all(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    sim = ""
    try:
        with demo(data) as d:
            deadline = time.monotonic() + START_TIMEOUT_S
            text = d.wait_running()
            port = d.port
            assert f"http://127.0.0.1:{port}/console" in text
            broker = re.search(r"mqtt://127\.0\.0\.1:(\d+)", text)
            assert broker and re.search(r"redis://127\.0\.0\.1:\d+", text)
            sim = f"--broker mqtt://127.0.0.1:{broker.group(1)} "
            assert "operator / operator-demo" in text and "mosquitto_pub" in text
            check_printed_mqtt_accounts(text, int(broker.group(1)), data)

            def ready() -> bool:
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            until_sync(ready, deadline - time.monotonic(), "the demo's service ready")
            r = httpx.get(f"http://127.0.0.1:{port}/api/devices", auth=("operator", "operator-demo"), timeout=5)
            assert len(r.json()["devices"]) >= 80  # the 20 demo homes

            def metrics_with_statuses() -> str | None:  # the simulator's retained statuses
                token = (data / "metrics-token").read_text().strip()  # the demo made it; its banner shows it
                auth = {"Authorization": f"Bearer {token}"}
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=auth, timeout=5).text
                return text if metric_sum(text, "responsecentre_device_statuses_total ") >= 80 else None

            metrics = until_sync(metrics_with_statuses, deadline - time.monotonic(), "80 device statuses stored")
            assert "responsecentre_events_rejected_total{" not in metrics  # the simulator speaks the contract
            assert len(processes_under(data)) >= 2  # our own mosquitto and redis-server
            assert any(" sim " in p for p in processes_under(sim)), "the simulator is not running"
            children = list(d.children())
            d.proc.send_signal(signal.SIGINT)  # Ctrl-C
            assert d.proc.wait(30) == 0
            assert wait_until_gone(children, 5) == [], "demo left processes running"
            assert processes_under(data) == [] and processes_under(sim) == [], "demo left processes running"
    finally:
        kill_processes_under(data)
        if sim:
            kill_processes_under(sim)
