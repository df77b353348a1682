"""`responsecentre demo`: the whole centre on one machine, for a first look.

Starts mosquitto and redis-server of its own on free loopback ports (state under
`.data/demo`), unless RC_MQTT_URL / RC_REDIS_URL point at running ones; creates a demo
login per role; runs the service and a simulator of the demo homes; prints where
everything is. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from responsecentre.config import Settings
from responsecentre.servers import Mosquitto, Redis, ServerProcess, free_port

DEMO_USERS = {
    # username: (role, password, staff id)
    "operator": ("operator", "operator-demo", "s-op1"),
    "nurse": ("nurse", "nurse-demo", "s-n1"),
    "admin": ("admin", "admin-demo", None),
    "integrator": ("integrator", "integrator-demo", None),
}


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _secret(data_dir: Path) -> str:
    path = data_dir / "secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


async def _seed_users(settings: Settings) -> None:
    import redis.asyncio as aioredis

    from responsecentre.web.auth import Users

    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        users = Users(client)
        for name, (role, password, staff_id) in DEMO_USERS.items():
            await users.add(name, password, role, staff_id)
    finally:
        await client.aclose()


def run_demo(settings: Settings, data_dir: Path, homes: int = 20) -> int:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    started: list[ServerProcess] = []
    sim: subprocess.Popen[bytes] | None = None
    try:
        if "RC_MQTT_URL" not in os.environ:
            broker = Mosquitto(workdir=data_dir / "mosquitto")
            broker.start()
            started.append(broker)
            settings = replace(settings, mqtt_url=broker.url)
        if "RC_REDIS_URL" not in os.environ:
            redis = Redis(workdir=data_dir / "redis")
            redis.start()
            started.append(redis)
            settings = replace(settings, redis_url=redis.url)
        port = settings.http_port if _port_free(settings.http_port) else free_port()
        settings = replace(settings, http_port=port, secret_key=settings.secret_key or _secret(data_dir))
        asyncio.run(_seed_users(settings))

        from responsecentre.service import Service

        print("responsecentre: loading the rule engine (the first start compiles the kernels) ...", flush=True)
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
                "--homes-file",
                str(settings.homes_path),
                "--rate",
                "10",
            ],
            start_new_session=True,
        )
        base = f"http://{settings.http_host}:{port}"
        logins = "\n".join(f"    {role:<11} {name} / {pw}" for name, (role, pw, _) in DEMO_USERS.items())
        print(
            f"""
responsecentre demo is running. Open these (Ctrl-C stops everything):

  console     {base}/console
  API docs    {base}/docs
  metrics     {base}/metrics
  broker      {settings.mqtt_url}
  redis       {settings.redis_url}

  logins (role, username / password):
{logins}

  publish an event by hand:
    mosquitto_pub -h 127.0.0.1 -p {settings.mqtt.port} -q 1 -t rc/v1/vestby/devices/h01-btn/events \\
      -m '{{"id": "manual-'$(date +%s%N)'", "type": "alarm.button", "ts": '$(date +%s%3N)'}}'
""",
            flush=True,
        )

        async def main() -> None:
            task = asyncio.ensure_future(service.run())
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, task.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(main())
        print("\nresponsecentre demo: stopping ...", flush=True)
        return 0
    finally:
        if sim is not None and sim.poll() is None:
            sim.terminate()
            try:
                sim.wait(5)
            except subprocess.TimeoutExpired:
                sim.kill()
        for server in reversed(started):
            server.stop()
