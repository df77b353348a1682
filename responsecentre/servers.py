"""Start and stop our own mosquitto and redis-server on free loopback ports.

`responsecentre demo` and the test fixtures share this, so the demo runs on exactly the
set-up the suite proves. Servers are children of this process, never daemonised: stop()
terminates, waits, then kills, and a caller's `finally` leaves nothing running.

A `finally` does not run when the parent is SIGKILLed (or the OOM killer picks it), so a
server can also be tied to its parent's life (`parent_death_signal`): on Linux the kernel
itself signals the child when the parent dies (prctl PR_SET_PDEATHSIG), whatever killed it.
The kernel fires that when the *thread* that forked the child ends, not the process: start
such servers from the main thread (or from one that lives as long as the process). Other
systems have no such call and mosquitto's or redis-server's side cannot be changed, so there
the tie is absent and a crashed parent's servers live on (`responsecentre demo` stops such
leftovers when it next starts on the same data directory). The test fixtures leave it off:
they behave exactly as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from responsecentre import broker
from responsecentre.broker import Account, BrokerConfig
from responsecentre.directory import Directory

READY_TIMEOUT_S = 15.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_DEATH_SIGNAL_SUPPORTED = sys.platform.startswith("linux")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str:
    """Debian puts mosquitto in /usr/sbin, which is not on a normal user's PATH."""
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/usr/local/bin/{name}") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        raise RuntimeError(f"{name} is not installed: run `make setup` or `apt-get install {name}`")
    return found


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """A `preexec_fn` for Popen that has the kernel send `sig` to the child as soon as this
    process dies, however it dies; None where the kernel cannot (not Linux).

    Call it, and Popen, from the main thread: the signal fires when the forking thread ends.
    """
    if not PARENT_DEATH_SIGNAL_SUPPORTED:
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the forked child
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl: nobody will signal us
            os.kill(os.getpid(), sig)

    return preexec


@dataclass(kw_only=True)
class ServerProcess:
    """One child server with its own directory, config and log file."""

    name: str
    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0
    ready_timeout_s: float = READY_TIMEOUT_S
    # The signal the server gets when this process dies (Linux; see the module docstring).
    # None: it outlives a crashed parent, as the test fixtures' servers always have.
    parent_death_signal: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def argv(self) -> list[str]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    def ready(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
            return True
        return False

    def environ(self) -> dict[str, str] | None:
        """The child's environment; None inherits ours."""
        return None

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=self.environ(),
            start_new_session=True,
            preexec_fn=None if self.parent_death_signal is None else die_with_parent(self.parent_death_signal),
        )
        log.close()
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"{self.name} not ready on {self.host}:{self.port} after {self.ready_timeout_s:.0f} s:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash, for fault tests (no shutdown save)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass(kw_only=True)
class Mosquitto(ServerProcess):
    """mosquitto with the accounts and ACLs of `directory` (see `responsecentre.broker`):
    no anonymous client, client ids bound to accounts, and a TLS listener on `tls_port`
    when one is given. `extra_accounts` come on top (the tests' harness clients).

    The files are written when the object is made, so `credentials` are there before
    `start`; `reload` writes them again (for a changed directory) and sends SIGHUP."""

    name: str = "mosquitto"
    directory: Directory = field(default_factory=Directory)
    simulator: bool = False  # an `rc-sim` account for the directory's tenants
    extra_accounts: Sequence[Account] = ()
    tls_port: int | None = None
    config: BrokerConfig = field(init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.configure()

    def configure(self) -> BrokerConfig:
        accounts = [*broker.directory_accounts(self.directory, self.simulator), *self.extra_accounts]
        self.config = broker.write_config(
            self.workdir,
            accounts,
            host=self.host,
            port=self.port,
            tls_port=self.tls_port,
            # As root, mosquitto would switch to user `mosquitto`, which cannot read our
            # files or write the persistence file in our directory.
            extra_lines=["user root"] if os.geteuid() == 0 else [],
        )
        return self.config

    def argv(self) -> list[str]:
        return [find_binary("mosquitto"), "-c", str(self.config.files.conf)]

    def reload(self, directory: Directory | None = None) -> None:
        """Regenerate from `directory` (default: the current one) and SIGHUP the broker.
        mosquitto applies it on its next loop turn, not before this returns."""
        if directory is not None:
            self.directory = directory
        self.configure()
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError("mosquitto is not running")
        self.proc.send_signal(signal.SIGHUP)

    @property
    def credentials(self) -> Mapping[str, str]:
        return self.config.credentials

    @property
    def credentials_path(self) -> Path:
        return self.config.files.credentials

    @property
    def ca_path(self) -> Path:
        return self.config.files.ca_cert

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str | None:
        return None if self.tls_port is None else f"mqtts://{self.host}:{self.tls_port}"


@dataclass(kw_only=True)
class Redis(ServerProcess):
    name: str = "redis"

    def argv(self) -> list[str]:
        return [
            find_binary("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.workdir),
            "--appendonly",
            "yes",
            # fsync before replying: an event is acked to the broker only after it is
            # stored, and "stored" must survive a power cut, not only a process crash.
            "--appendfsync",
            "always",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--logfile",
            "",
        ]

    def ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


@dataclass(kw_only=True)
class Centre(ServerProcess):
    """The service itself (`python -m responsecentre run`) as a child process, ready when
    /readyz answers 200: for the end-to-end and crash tests and the pipeline benchmark.
    `args` are its flags beyond --host/--port, `env` its settings (RC_*) on top of ours."""

    name: str = "service"
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 60.0

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "responsecentre",
            "run",
            "--host",
            self.host,
            "--port",
            str(self.port),
            *self.args,
        ]

    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1.0) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url
