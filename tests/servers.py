"""Real mosquitto and redis-server for the tests, on free loopback ports.

The test broker is the production one (`responsecentre.broker`: no anonymous clients,
client ids bound to accounts, the centre's `rc-ingest` and `rc-notifier` with their real
ACLs), plus a pool of test-only harness accounts that may read and write all of `rc/#`.
Tests that play a device sending malformed topics (poison, fuzz) or a listener on pages
use a harness account, so they go on testing the centre, not the ACL; the service under
test logs in with the real centre accounts (tests/service.py), so its ACLs are exercised
end to end. tests/test_broker_security.py tests the ACLs themselves.

With `use_username_as_clientid` two connections on one account throw each other off, so
each harness client gets an account of its own from a round-robin pool: a test may hold at
most HARNESS_ACCOUNTS harness connections at once.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from responsecentre import servers
from responsecentre.broker import Access, Account, Grant
from responsecentre.servers import Redis, ServerProcess
from tests.waiting import until_sync

__all__ = ["HARNESS_ACCOUNTS", "Mosquitto", "Redis", "ServerProcess", "harness_accounts", "running"]

HARNESS_ACCOUNTS = 32

S = TypeVar("S", bound=ServerProcess)


def harness_accounts(n: int = HARNESS_ACCOUNTS) -> tuple[Account, ...]:
    return tuple(Account(f"harness-{i}", (Grant(Access.READWRITE, "rc/#"),)) for i in range(1, n + 1))


@dataclass(kw_only=True)
class Mosquitto(servers.Mosquitto):
    """The production broker config plus the harness accounts (see the module docstring)."""

    extra_accounts: Sequence[Account] = field(default_factory=harness_accounts)
    _pool: Iterator[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._pool = itertools.cycle([a.username for a in self.extra_accounts if a.username.startswith("harness-")])

    def harness(self) -> tuple[str, str]:
        """(username, password) of the next harness account, one per client."""
        name = next(self._pool)
        return name, self.credentials[name]

    def account(self, username: str) -> tuple[str, str]:
        return username, self.credentials[username]

    def client(
        self,
        account: tuple[str, str] | None = None,
        client_id: str = "",
        protocol: int = mqtt.MQTTv5,
        inflight: int = 20,
        tls: bool = False,
    ) -> mqtt.Client:
        """A paho client logged in as `account` (default: the next harness account), its
        network loop running; raises ConnectionRefusedError when the broker says no. With
        `tls`, on the TLS listener, trusting the broker's own CA."""
        user, password = account or self.harness()
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=protocol, client_id=client_id)
        client.username_pw_set(user, password)
        client.max_inflight_messages_set(inflight)  # paho allows it only before connecting
        answers: list[ReasonCode] = []
        client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(reason)
        if tls:
            assert self.tls_port is not None, "this broker has no TLS listener"
            client.tls_set(ca_certs=str(self.ca_path))
        client.connect(self.host, self.tls_port if tls and self.tls_port else self.port)
        client.loop_start()
        try:
            until_sync(lambda: answers, 10, f"the CONNACK for {user}")
        finally:
            if not answers or answers[0].is_failure:
                client.loop_stop()
        if answers[0].is_failure:
            raise ConnectionRefusedError(f"{user}: {answers[0]}")
        return client

    def url_for(self, account: tuple[str, str]) -> str:
        """mqtt://user:password@host:port (for the simulator's --broker)."""
        user, password = (quote(x, safe="") for x in account)
        return f"mqtt://{user}:{password}@{self.host}:{self.port}"


@contextlib.contextmanager
def running(kind: type[S], workdir: Path, **kwargs: Any) -> Iterator[S]:
    """A started server that is stopped (terminate, wait, kill) whatever happens; its log
    is printed when it fails to start."""
    server = kind(workdir=workdir, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()
