"""A sign-in flood, as the penetration test ran it: N clients, each a loop of POST /login
with a wrong password, as fast as the answers come back. Its own process, so that the
flood's CPU and GIL are not the measuring test's.

    python -m tests.flood URL [--clients 32] [--username NAME] [--local-address 127.0.0.2]

Runs until stdin closes, then prints one JSON line: how many answers of each status
(and "error" for a failed connection).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from collections import Counter


async def flood(url: str, clients: int, username: str | None, local_address: str | None) -> Counter[str]:
    statuses: Counter[str] = Counter()
    stop = asyncio.Event()

    async def one(i: int) -> None:
        import httpx

        transport = httpx.AsyncHTTPTransport(local_address=local_address) if local_address else None
        async with httpx.AsyncClient(base_url=url, transport=transport, timeout=30) as http:
            n = 0
            while not stop.is_set():
                n += 1
                name = username or ("operator" if n % 2 else f"nobody-{i}-{n}")
                data = {"username": name, "password": secrets.token_hex(8), "next": "/console"}
                # A header that must not matter: the address is the socket's.
                headers = {"X-Forwarded-For": f"10.{i}.{n % 250}.{n % 200 + 1}"}
                try:
                    r = await http.post("/login", data=data, headers=headers)
                    statuses[str(r.status_code)] += 1
                except httpx.HTTPError:
                    statuses["error"] += 1

    async def until_stdin_closes() -> None:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        stop.set()

    await asyncio.gather(until_stdin_closes(), *(one(i) for i in range(clients)))
    return statuses


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--username", help="flood this user (default: operator and unknown names by turns)")
    p.add_argument("--local-address", help="the address to send from, e.g. 127.0.0.2")
    args = p.parse_args()
    print("flooding", flush=True)
    statuses = asyncio.run(flood(args.url, args.clients, args.username, args.local_address))
    print(json.dumps(dict(statuses)), flush=True)


if __name__ == "__main__":
    main()
