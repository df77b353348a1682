"""Real mosquitto and redis-server for the tests, on free loopback ports.

RC_TEST_MQTT_URL / RC_TEST_REDIS_URL point the suite at external servers instead (then
the fault tests that stop a server are skipped).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from responsecentre.servers import Mosquitto, Redis, ServerProcess

__all__ = ["Mosquitto", "Redis", "ServerProcess", "running"]

S = TypeVar("S", bound=ServerProcess)


@contextlib.contextmanager
def running(kind: type[S], workdir: Path) -> Iterator[S]:
    """A started server that is stopped (terminate, wait, kill) whatever happens; its log
    is printed when it fails to start."""
    server = kind(workdir=workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
