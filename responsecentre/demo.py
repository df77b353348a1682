"""`responsecentre demo`: the whole centre on one machine, for a first look.

Starts mosquitto and redis-server of its own on free loopback ports (state under
`.data/demo`), unless RC_MQTT_URL / RC_REDIS_URL point at running ones; creates a demo
login per role; runs the service and a simulator of the demo homes; prints where
everything is. Ctrl-C stops everything it started. Its broker is closed like a real one
(docs/security.md): accounts and ACLs for the demo homes and staff plus the simulator's,
a TLS listener, and the credentials it made are printed (one account of each kind).

The demo is a handful of processes that must live and die as one, because a part left
behind does harm that nobody sees: a leaked redis-server keeps writing the append-only file
the next demo reads, a leaked simulator keeps publishing into a broker, a dead broker
behind a banner that says "running" makes the console look broken for no reason. Hence:

- Its children die with it, however it dies. SIGINT, SIGTERM and SIGHUP (a closed
  terminal) stop it cleanly. For SIGKILL, the OOM killer or a crash, where no `finally`
  runs, the kernel signals each child when the demo dies (Linux's PR_SET_PDEATHSIG, see
  `servers.die_with_parent`): mosquitto and Redis get SIGTERM, to save their state, the
  simulator SIGKILL (it has none). The kernel sends it when the *thread* that started the
  child ends, so the children are started from the main thread, which lives as long as the
  demo. Other systems have no such call: there a SIGKILLed demo's children live on until the
  next demo on the same data directory stops them (below).
- One demo per data directory. Two brokers or two Redis on one directory would corrupt
  each other's files, so the demo holds an flock on `demo.lock` there while it runs; a
  second one refuses. The kernel drops the lock when the holder dies, however it dies, so
  a crashed demo never blocks the next one. The pids of the children (with their start
  times, so a reused pid is never taken for one) go to `demo.pids`; the next demo stops any
  of them still running before it starts its own.
- The demo watches its children: if the broker, Redis or the simulator ends while the
  demo runs, it says which and how on stderr, stops the rest and exits non-zero. The banner
  is printed only once the simulator has connected and the service listens, so it never
  claims a run that is not. Stopping the service is bounded too (SERVICE_STOP_TIMEOUT_S):
  a service task that ignores its cancellation is abandoned, not waited on, because the
  children must still be stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from responsecentre import contract
from responsecentre.config import Settings
from responsecentre.directory import Directory
from responsecentre.servers import Mosquitto, Redis, ServerProcess, die_with_parent, free_port

if TYPE_CHECKING:
    from responsecentre.service import Service

DEMO_USERS = {
    # username: (role, password, staff id)
    "operator": ("operator", "operator-demo", "s-op1"),
    "nurse": ("nurse", "nurse-demo", "s-n1"),
    "admin": ("admin", "admin-demo", None),
    "integrator": ("integrator", "integrator-demo", None),
}

LOCK_FILE = "demo.lock"
PIDS_FILE = "demo.pids"
WATCH_EVERY_S = 0.5
SERVICE_STOP_TIMEOUT_S = 10.0
SIM_READY_TIMEOUT_S = 30.0  # the simulator gives up on a silent broker after ~15 s itself
LEFTOVER_STOP_TIMEOUT_S = 5.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _say(text: str, *, err: bool = False) -> None:
    """Print, but never fail: after SIGHUP the terminal may be gone (EIO) and stopping
    must go on regardless."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr if err else sys.stdout, flush=True)


class DataDirBusy(RuntimeError):
    """Another live demo holds the data directory."""


class _Stop(BaseException):
    """SIGTERM or SIGHUP during start-up or shutdown: unwinds like Ctrl-C's KeyboardInterrupt."""


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(signum)


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold `demo.lock` in `data_dir` (exclusive flock) until the returned file is closed or
    this process dies; raises DataDirBusy naming the holder when a live demo has it."""
    lock = (data_dir / LOCK_FILE).open("a+")  # "a+": do not wipe the holder's pid before we hold it
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise DataDirBusy(
            f"another responsecentre demo (pid {holder}) is running on {data_dir}; "
            "stop it first (Ctrl-C in its terminal) or give this one another --data-dir"
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _start_token(pid: int) -> str | None:
    """What tells process `pid` from a later one given the same pid: its start time.
    None when no such process is running (a zombie counts as gone)."""
    if Path("/proc/self/stat").exists():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return None if fields[0] in ("Z", "X") else fields[19]  # field 22 of proc(5): starttime
    try:
        out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    server: ServerProcess | None = None  # for its log
    token: str = ""

    def how_it_ended(self) -> str:
        code = self.proc.returncode
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                return f"was killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"


def _record(data_dir: Path, children: list[_Child]) -> None:
    """Write the children's pids, for the next demo if this one dies without stopping them."""
    tmp = data_dir / f"{PIDS_FILE}.tmp"
    tmp.write_text("".join(f"{c.proc.pid}\t{c.token}\t{c.name}\n" for c in children))
    tmp.replace(data_dir / PIDS_FILE)


def stop_leftovers(data_dir: Path, say: Callable[[str], None]) -> None:
    """Stop the processes a dead demo on `data_dir` left running (its `demo.pids`): SIGTERM,
    then SIGKILL after LEFTOVER_STOP_TIMEOUT_S. Call with the data dir's lock held."""
    path = data_dir / PIDS_FILE
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return
    alive: list[tuple[int, str, str]] = []
    for line in lines:
        with contextlib.suppress(ValueError):
            pid_text, token, name = line.split("\t", 2)
            if token and _start_token(int(pid_text)) == token:
                alive.append((int(pid_text), token, name))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, _token, name in alive:
            if sig == signal.SIGTERM:
                say(f"responsecentre demo: stopping {name} (pid {pid}), left running by an earlier demo on {data_dir}")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + LEFTOVER_STOP_TIMEOUT_S
        while alive and time.monotonic() < deadline:
            alive = [a for a in alive if _start_token(a[0]) == a[1]]
            if alive:
                time.sleep(0.05)
    if alive:
        names = ", ".join(f"{name} (pid {pid})" for pid, _t, name in alive)
        raise RuntimeError(f"{names}, left by an earlier demo on {data_dir}, will not stop; stop it by hand")
    path.unlink(missing_ok=True)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _secret(data_dir: Path, name: str) -> str:
    """A random secret kept in the data directory (created owner-only), the same each run."""
    path = data_dir / name
    if not path.exists():
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


async def _seed_users(settings: Settings, tenants: list[str]) -> None:
    import redis.asyncio as aioredis

    from responsecentre.web.auth import Users

    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        users = Users(client)
        for name, (role, password, staff_id) in DEMO_USERS.items():
            await users.add(name, password, role, staff_id, tenants)
    finally:
        await client.aclose()


def mqtt_accounts(settings: Settings, directory: Directory, broker: Mosquitto | None) -> str:
    """The banner's MQTT part: one account of each kind from the credentials file, and
    how to publish as a device and listen as an integrator with them."""
    from responsecentre import broker as accounts

    if settings.mqtt_credentials is None or not directory.device_list:
        return ""
    credentials = accounts.load_credentials(settings.mqtt_credentials)
    device = directory.device_list[0]
    staff = directory.staff.get((device.tenant, DEMO_USERS["nurse"][2] or "")) or next(iter(directory.staff.values()))
    dev = accounts.device_username(device.tenant, device.device_id)
    integ = accounts.integrator_username(device.tenant)
    names = {
        "simulator": accounts.SIMULATOR,
        "integrator": integ,
        "handset": accounts.handset_username(staff.tenant, staff.staff_id),
        "device": dev,
    }
    shown = [f"    {kind:<11} {name} / {credentials[name]}" for kind, name in names.items() if name in credentials]
    text = f"\n  MQTT accounts (username / password; all of them in {settings.mqtt_credentials}):\n"
    text += "\n".join(shown) + "\n"
    if dev in credentials:
        text += f"""
  publish an event by hand, as device {device.device_id} (it may publish on its own topics only):
    mosquitto_pub -h 127.0.0.1 -p {settings.mqtt.port} -u {dev} -P '{credentials[dev]}' -q 1 \\
      -t {contract.events_topic(device.tenant, device.device_id)} \\
      -m '{{"id": "manual-'$(date +%s%N)'", "type": "alarm.button", "ts": '$(date +%s%3N)'}}'
"""
    if integ in credentials:
        where, how = f"-p {settings.mqtt.port}", ""
        if broker is not None and broker.tls_port is not None:
            where, how = f"-p {broker.tls_port} --cafile {broker.ca_path}", " (over TLS)"
        text += f"""
  watch the alarm states of {device.tenant} as its integrator{how}:
    mosquitto_sub -h 127.0.0.1 {where} -u {integ} -P '{credentials[integ]}' -v -t 'rc/v1/{device.tenant}/alarms/#'
"""
    return text


def _follow_sim(stream: IO[bytes], ready: threading.Event) -> None:
    """Pass the simulator's output on to ours; `ready` once it says it is connected."""
    for line in stream:
        if not ready.is_set() and line.startswith(b"sim: ") and b" devices -> " in line:
            ready.set()
        with contextlib.suppress(OSError, ValueError):  # our terminal may be gone: keep draining
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()


def _report_death(child: _Child, phase: str = "running") -> None:
    text = (
        f"responsecentre demo: {child.name} (pid {child.proc.pid}) {child.how_it_ended()} "
        f"while the demo was {phase}; stopping everything."
    )
    tail = child.server.log_tail(10).strip() if child.server is not None else ""
    if child.server is not None and tail:
        text += f"\n  the end of its log, {child.server.log_path}:\n" + "\n".join(f"    {x}" for x in tail.splitlines())
    _say(text, err=True)


def _dead(children: list[_Child]) -> _Child | None:
    return next((c for c in children if c.proc.poll() is not None), None)


async def _watch(children: list[_Child], every_s: float = WATCH_EVERY_S) -> _Child:
    while (dead := _dead(children)) is None:
        await asyncio.sleep(every_s)
    return dead


async def _supervise(service: Service, children: list[_Child], banner: Callable[[], None]) -> int:
    """Run the service, print `banner` once it listens, and go on until a stop signal (0),
    a child's death or the service's own end (1). Stopping the service is bounded."""
    loop = asyncio.get_running_loop()
    stop, hurry = asyncio.Event(), asyncio.Event()  # a second signal: do not wait for the service
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, lambda: hurry.set() if stop.is_set() else stop.set())
    running = asyncio.ensure_future(service.run())
    stopped = asyncio.ensure_future(stop.wait())
    watcher = asyncio.ensure_future(_watch(children))
    listening = asyncio.ensure_future(service.started.wait())
    ends = {running, stopped, watcher}
    code = 0
    try:
        await asyncio.wait({*ends, listening}, return_when=asyncio.FIRST_COMPLETED)
        if not any(t.done() for t in ends):
            banner()
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        if stopped.done():
            pass
        elif watcher.done():
            code = 1
            _report_death(watcher.result())
        else:
            code = 1
            # A dead child is the likely cause (the service may notice a dead Redis first):
            # name it rather than the service's symptom.
            try:
                _report_death(await asyncio.wait_for(_watch(children, 0.05), 1.0))
            except TimeoutError:
                exc = None if running.cancelled() else running.exception()
                detail = "".join(traceback.format_exception(exc)) if exc else "it returned by itself\n"
                _say(f"responsecentre demo: the service stopped; stopping everything.\n{detail}", err=True)
    finally:
        stop.set()
        for task in (stopped, watcher, listening, running):
            task.cancel()
        hurried = asyncio.ensure_future(hurry.wait())
        await asyncio.wait({running, hurried}, timeout=SERVICE_STOP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        hurried.cancel()
        if running.done():
            if not running.cancelled():
                running.exception()  # seen: reported above or irrelevant once stopping
        else:
            stuck = ", ".join(sorted(t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()))
            why = "a second stop signal" if hurry.is_set() else f"{SERVICE_STOP_TIMEOUT_S:.0f} s"
            _say(
                f"responsecentre demo: the service did not stop before {why} (still running: {stuck}); leaving it",
                err=True,
            )
    return code


def _run_loop(main: Coroutine[Any, Any, int], abandoned: list[asyncio.Task[Any]]) -> int:
    """asyncio.run, except that tasks which ignore cancellation are put in `abandoned`, not
    awaited for ever: the demo must go on to stop its children."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        abandoned.extend(t for t in asyncio.all_tasks(loop) if not t.done())
        if not abandoned:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def run_demo(settings: Settings, data_dir: Path, homes: int = 20) -> int:
    """`responsecentre demo`; returns the exit status: 0 after a stop signal, 1 when the data
    directory is taken or a part of the demo failed."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = lock_data_dir(data_dir)
    except DataDirBusy as exc:
        _say(f"responsecentre demo: {exc}", err=True)
        return 1
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig in previous:
        signal.signal(sig, _raise_stop)
    started: list[ServerProcess] = []
    children: list[_Child] = []
    abandoned: list[asyncio.Task[Any]] = []
    code = 1
    try:
        stop_leftovers(data_dir, lambda line: _say(line, err=True))
        code = _run(settings, data_dir, homes, started, children, abandoned)
    except (KeyboardInterrupt, _Stop):
        _say("\nresponsecentre demo: stopping ...")
        code = 0
    finally:
        # Stopping is bounded (terminate, wait, kill); a second SIGTERM or SIGHUP must not
        # cut it short. A second Ctrl-C does, and the kernel's parent-death signal then
        # takes the children down.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        for child in children:
            if child.server is None and child.proc.poll() is None:  # the simulator
                child.proc.terminate()
                try:
                    child.proc.wait(5)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                    child.proc.wait(5)
        for server in reversed(started):
            server.stop()
        (data_dir / PIDS_FILE).unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lock.close()  # only now: the next demo may use the directory
        if abandoned:
            # Tasks that ignored their cancellation are still pending: at the interpreter's
            # shutdown their clean-up would run without a loop and spill tracebacks. All
            # the demo started is stopped by now, so leave at once.
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    return code


def _run(
    settings: Settings,
    data_dir: Path,
    homes: int,
    started: list[ServerProcess],
    children: list[_Child],
    abandoned: list[asyncio.Task[Any]],
) -> int:
    """Start everything, then supervise it; the caller's `finally` stops what `started` and
    `children` hold (they are filled before each start returns, so nothing escapes)."""

    def start(server: ServerProcess, name: str) -> ServerProcess:
        started.append(server)
        server.start()
        assert server.proc is not None
        children.append(_Child(name, server.proc, server, _start_token(server.proc.pid) or ""))
        _record(data_dir, children)
        return server

    from responsecentre.directory import load_directory

    directory = load_directory(settings.homes_path, settings.staff_path)
    broker: Mosquitto | None = None
    if "RC_MQTT_URL" not in os.environ:
        # Accounts and ACLs for the demo homes and staff, the simulator's account, and a
        # TLS listener; passwords and the CA are kept in the data dir from run to run.
        mosquitto = Mosquitto(
            workdir=data_dir / "mosquitto",
            directory=directory,
            simulator=True,
            tls_port=free_port(),
            parent_death_signal=signal.SIGTERM,
        )
        start(mosquitto, "mosquitto")
        broker = mosquitto
        settings = replace(settings, mqtt_url=mosquitto.url, mqtt_credentials=mosquitto.credentials_path)
    if "RC_REDIS_URL" not in os.environ:
        redis = start(Redis(workdir=data_dir / "redis", parent_death_signal=signal.SIGTERM), "redis-server")
        settings = replace(settings, redis_url=redis.url)
    port = settings.http_port if _port_free(settings.http_port) else free_port()
    settings = replace(settings, http_port=port)
    settings = replace(settings, metrics_token=settings.metrics_token or _secret(data_dir, "metrics-token"))
    asyncio.run(_seed_users(settings, directory.tenants))

    from responsecentre.service import Service

    _say("responsecentre: loading the rule engine (the first start compiles the kernels) ...")
    service = Service(settings)
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "responsecentre",
            "sim",
            "--homes",
            str(homes),
            "--broker",
            settings.mqtt_url,
            # The password from the file, not on the command line (which every user can read).
            *(["--credentials", str(settings.mqtt_credentials)] if settings.mqtt_credentials else []),
            "--homes-file",
            str(settings.homes_path),
            "--rate",
            "10",
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,  # Ctrl-C reaches the demo only; the demo stops the rest in order
        preexec_fn=die_with_parent(signal.SIGKILL),
    )
    children.append(_Child("the simulator", sim, None, _start_token(sim.pid) or ""))
    _record(data_dir, children)
    assert sim.stdout is not None
    sim_ready = threading.Event()
    threading.Thread(target=_follow_sim, args=(sim.stdout, sim_ready), name="sim-output", daemon=True).start()
    deadline = time.monotonic() + SIM_READY_TIMEOUT_S
    while not sim_ready.wait(0.05):
        if (dead := _dead(children)) is not None:
            _report_death(dead, "starting")
            return 1
        if time.monotonic() > deadline:
            _say(f"responsecentre demo: the simulator did not connect within {SIM_READY_TIMEOUT_S:.0f} s", err=True)
            return 1

    base = f"http://{settings.http_host}:{port}"
    tls = f"\n  broker TLS  {broker.tls_url}  (CA certificate {broker.ca_path})" if broker and broker.tls_url else ""
    logins = "\n".join(f"    {role:<11} {name} / {pw}" for name, (role, pw, _) in DEMO_USERS.items())

    def banner() -> None:
        _say(
            f"""
responsecentre demo is running. Open these (Ctrl-C stops everything):

  console     {base}/console
  API docs    {base}/docs
  metrics     {base}/metrics  (Authorization: Bearer {settings.metrics_token})
  broker      {settings.mqtt_url}{tls}
  redis       {settings.redis_url}

  logins (role, username / password):
{logins}
{mqtt_accounts(settings, directory, broker)}"""
        )

    code = _run_loop(_supervise(service, children, banner), abandoned)
    _say("\nresponsecentre demo: stopping ...")
    return code
