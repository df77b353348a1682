"""`responsecentre users unlock | passwd | token create | token list | token revoke`.

The command line works on Redis directly, so it still works when nobody can sign in: the
only admin locked out at 3 a.m., a forgotten admin password, a leaked token to revoke now.
What it changes is audited like the API's changes, with `cli:<OS user>` as the actor.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis

from responsecentre.clock import system_clock
from responsecentre.config import Settings
from responsecentre.store.keys import KEYS
from responsecentre.store.records import AUDIT_MAXLEN, audit_record
from responsecentre.web.auth import Users, password_problem
from responsecentre.web.throttle import Throttle
from responsecentre.web.tokens import TokenStore

T = TypeVar("T")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


async def _audit(client: aioredis.Redis, action: str, **detail: str) -> None:
    await client.xadd(
        KEYS.audit(), audit_record(system_clock(), _actor(), action, **detail), maxlen=AUDIT_MAXLEN, approximate=True
    )


def _on_redis(args: argparse.Namespace, work: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    redis_url = args.redis or Settings.from_env().redis_url

    async def run() -> T:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


async def unlock(client: aioredis.Redis, username: str | None, address: str | None) -> list[str]:
    """Lift a user's lockout and forget her failures, and/or forget an address's failures."""
    throttle = Throttle(client)
    done = []
    if username:
        was = await throttle.unlock(username)
        await _audit(client, "unlock", target=username, was_locked=str(was).lower())
        done.append(f"user {username}: " + ("unlocked" if was else "had no failed sign-ins"))
    if address:
        was = await throttle.unlock_address(address)
        await _audit(client, "unlock_address", target=address, was_locked=str(was).lower())
        done.append(f"address {address}: " + ("failures forgotten" if was else "had no failed sign-ins"))
    return done


async def set_password(client: aioredis.Redis, username: str, password: str) -> int | None:
    """New password (ends all the user's sessions; her tokens stay). None: no such user."""
    ended = await Users(client).set_password(username, password)
    if ended is not None:
        await _audit(client, "password_reset", target=username, sessions_ended=str(ended))
    return ended


async def create_token(client: aioredis.Redis, username: str, label: str) -> str | None:
    if await Users(client).get(username) is None:
        return None
    token, info = await TokenStore(client).create(username, label, system_clock())
    await _audit(client, "token_create", target=username, token=info.id)
    return token


async def revoke_token(client: aioredis.Redis, token_id: str) -> str | None:
    """Revoke by id alone; the user it belonged to, or None if there was no such token."""
    info = await TokenStore(client).revoke(token_id)
    if info is None:
        return None
    await _audit(client, "token_revoke", target=info.username, token=token_id)
    return info.username


def cmd_unlock(args: argparse.Namespace) -> int:
    if not args.username and not args.address:
        print("error: name a user, --address, or both", file=sys.stderr)
        return 2
    for line in _on_redis(args, lambda c: unlock(c, args.username, args.address)):
        print(line)
    return 0


def _read_new_password(username: str) -> str | None:
    if not sys.stdin.isatty():  # scripted: the first line of stdin, never a flag (ps shows flags)
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"new password for {username}: ")
    if getpass.getpass("again: ") != first:
        print("error: the two passwords differ", file=sys.stderr)
        return None
    return first


def cmd_passwd(args: argparse.Namespace) -> int:
    password = _read_new_password(args.username)
    if password is None:
        return 1
    why = password_problem(args.username, password)
    if why is not None:
        print(f"error: {why}", file=sys.stderr)
        return 2
    ended = _on_redis(args, lambda c: set_password(c, args.username, password))
    if ended is None:
        print(f"error: no user {args.username!r}", file=sys.stderr)
        return 1
    print(f"password of {args.username} set; {ended} session(s) ended; API tokens unchanged")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    token = _on_redis(args, lambda c: create_token(c, args.username, args.label))
    if token is None:
        print(f"error: no user {args.username!r}", file=sys.stderr)
        return 1
    print(token)
    print("(shown only now: Redis keeps only its hash; send it as `Authorization: Bearer <token>`)", file=sys.stderr)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from responsecentre.alarms.view import iso

    for info in _on_redis(args, lambda c: TokenStore(c).of_user(args.username)):
        used = iso(info.last_used_ms) if info.last_used_ms else "never"
        print(f"{info.id}  created {iso(info.created_ms)}  last used {used}  {info.label}")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    username = _on_redis(args, lambda c: revoke_token(c, args.token_id))
    if username is None:
        print(f"error: no token {args.token_id!r}", file=sys.stderr)
        return 1
    print(f"token {args.token_id} of {username} revoked")
    return 0


def add_commands(usub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds unlock, passwd and token to `responsecentre users`."""

    def redis_flag(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--redis", help="redis://host:port/db (env RC_REDIS_URL)")
        return p

    unlock_p = redis_flag(usub.add_parser("unlock", help="lift a lockout after failed sign-ins"))
    unlock_p.add_argument("username", nargs="?")
    unlock_p.add_argument("--address", help="also forget the failed sign-ins from this client address")
    unlock_p.set_defaults(fn=cmd_unlock)

    passwd = redis_flag(usub.add_parser("passwd", help="set a password (prompted; or stdin); ends her sessions"))
    passwd.add_argument("username")
    passwd.set_defaults(fn=cmd_passwd)

    token = usub.add_parser("token", help="API tokens")
    tsub = token.add_subparsers(dest="token_command", required=True)
    create = redis_flag(tsub.add_parser("create", help="make a token for a user and print it (once)"))
    create.add_argument("username")
    create.add_argument("--label", default="", help="what it is for, e.g. the integration's name")
    create.set_defaults(fn=cmd_token_create)
    listing = redis_flag(tsub.add_parser("list", help="a user's tokens (ids, no secrets)"))
    listing.add_argument("username")
    listing.set_defaults(fn=cmd_token_list)
    revoke = redis_flag(tsub.add_parser("revoke", help="revoke a token by its id"))
    revoke.add_argument("token_id")
    revoke.set_defaults(fn=cmd_token_revoke)
