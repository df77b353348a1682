"""One CLI: `responsecentre run | demo | sim | broker config | rules check | explain | reload | users add | unlock |
passwd | token`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

from responsecentre.config import Settings
from responsecentre.roster_cli import add_roster_parser


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        mqtt_url=getattr(args, "broker", None),
        redis_url=getattr(args, "redis", None),
        http_port=getattr(args, "port", None),
        http_host=getattr(args, "host", None),
        rules_path=getattr(args, "rules", None),
        chains_path=getattr(args, "chains", None),
        homes_path=getattr(args, "homes", None),
        staff_path=getattr(args, "staff", None),
        mqtt_credentials=getattr(args, "mqtt_credentials", None),
    )


def cmd_run(args: argparse.Namespace) -> int:
    from responsecentre.service import Service, run_until_signalled

    service = Service(_settings(args))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_until_signalled(service.run(), on_hangup=service.rules.reload_on_signal))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from responsecentre.demo import run_demo

    return run_demo(_settings(args), data_dir=args.data_dir, homes=args.sim_homes)


def cmd_broker_config(args: argparse.Namespace) -> int:
    """Write mosquitto's password, ACL and config files (and TLS files) for the directory;
    with --reload, SIGHUP the broker running on them so it applies them now."""
    from responsecentre import broker
    from responsecentre.directory import load_directory

    settings = _settings(args)
    try:
        directory = load_directory(settings.homes_path, settings.staff_path)
        accounts = broker.directory_accounts(directory, simulator=args.simulator)
        config = broker.write_config(args.out, accounts, host=args.host, port=args.port, tls_port=args.tls_port)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{config.files.conf}: {len(accounts)} accounts; passwords in {config.files.credentials} (keep it secret)")
    if args.tls_port is not None:
        print(f"TLS on port {args.tls_port}; devices need the CA certificate {config.files.ca_cert}")
    if args.reload:
        try:
            pid = broker.signal_reload(config.files)
        except broker.BrokerNotRunning as exc:
            print(f"error: not reloaded: {exc}", file=sys.stderr)
            return 1
        print(f"mosquitto (pid {pid}) told to reload (SIGHUP)")
    return 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    from responsecentre.engine import RuleError, load_rules

    try:
        pack = load_rules(Path(args.file))
    except (RuleError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: {len(pack.rules)} rules OK")
    for rule in pack.rules:
        if rule.action == "clear":
            decides = f"clears {rule.alarm}"
        else:
            decides = f"-> {rule.alarm} ({rule.priority}, chain {rule.chain})"
        if rule.cancel_by:
            decides += f"; cancelled by {', '.join(rule.cancel_by)} within {rule.cancel_within_ms / 1000:g} s"
        print(f"  {rule.name:28} {rule.kind:13} {decides}")
    if pack.auto_clear:
        print(f"auto-clearable alarm kinds: {', '.join(sorted(pack.auto_clear))}")
    return 0


def cmd_rules_explain(args: argparse.Namespace) -> int:
    """The rules in force for one home, overrides marked, and its devices' supervision."""
    from responsecentre.directory import load_catalog, load_directory
    from responsecentre.engine import RuleError, load_rules
    from responsecentre.rules_admin import catalog_path
    from responsecentre.rules_explain import explain_home

    tenant, _, home_id = args.home.partition("/")
    if not tenant or not home_id:
        print(f"error: --home wants TENANT/HOME, e.g. vestby/h03, not {args.home!r}", file=sys.stderr)
        return 2
    settings = _settings(args)
    try:
        pack = load_rules(settings.rules_path)
        directory = load_directory(settings.homes_path, None)
        path = args.catalog or catalog_path(settings)
        catalog = load_catalog(path) if path is not None else {}
        lines = explain_home(pack, directory, tenant, home_id, catalog)
    except (RuleError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def cmd_rules_reload(args: argparse.Namespace) -> int:
    """Check a pack here, then have the running service load it (through Redis)."""
    import getpass

    import redis.asyncio as aioredis

    from responsecentre.engine import parse_rules
    from responsecentre.rules_admin import PackRefused, ask_service, read_pack_text

    settings = _settings(args)
    path = settings.rules_path
    try:
        text = read_pack_text(path)
        pack = parse_rules(text, source=str(path))
    except PackRefused as refused:
        for error in refused.errors:
            print(f"error: {error}", file=sys.stderr)
        return 1
    except ValueError as exc:  # RuleError: file:line: message
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: {len(pack.rules)} rules OK; asking the running service to load it")

    async def ask() -> dict[str, object] | None:
        client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
        try:
            return await ask_service(client, text, str(path), getpass.getuser(), args.timeout)
        finally:
            await client.aclose()

    try:
        answer = asyncio.run(ask())
    except OSError as exc:
        print(f"error: Redis cannot be reached ({exc})", file=sys.stderr)
        return 1
    except Exception as exc:  # redis-py's ConnectionError and friends
        print(f"error: Redis cannot be reached ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    if answer is None:
        print(
            f"error: no service answered within {args.timeout:g} s: is `responsecentre run` running against this "
            "Redis? (the request was withdrawn)",
            file=sys.stderr,
        )
        return 1
    if not answer.get("ok"):
        print("error: the service refused the pack; the running pack stays:", file=sys.stderr)
        for error in answer.get("errors") or []:  # type: ignore[attr-defined]
            print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"loaded: sha256 {answer['sha256']} (was {answer['previous_sha256']}), {answer['rules']} rules")
    for word in ("kept", "reset", "added", "removed"):
        names = answer.get(word) or []
        print(f"  {word:8} {len(names):3}  {', '.join(names)}".rstrip())  # type: ignore[arg-type]
    print(f"  swapped in {float(answer['seconds']) * 1000:.1f} ms")  # type: ignore[arg-type]
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    import getpass

    import redis.asyncio as aioredis

    from responsecentre.web.auth import Users, password_problem

    password = args.password or getpass.getpass(f"password for {args.username}: ")
    if (why := password_problem(args.username, password)) is not None:
        print(f"error: {why}", file=sys.stderr)
        return 2

    async def add() -> None:
        client = aioredis.Redis.from_url(_settings(args).redis_url)
        try:
            await Users(client).add(args.username, password, args.role, args.staff_id, args.tenant)
        finally:
            await client.aclose()

    asyncio.run(add())
    print(f"user {args.username} ({args.role}; tenants {', '.join(args.tenant)}) saved")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="responsecentre", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    def service_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--broker", help="mqtt://host:port (env RC_MQTT_URL)")
        sp.add_argument("--redis", help="redis://host:port/db (env RC_REDIS_URL)")
        sp.add_argument("--host", help="HTTP bind address (env RC_HTTP_HOST)")
        sp.add_argument("--port", type=int, help="HTTP port (env RC_HTTP_PORT)")
        sp.add_argument("--rules", type=Path, help="rule pack (default rules/default.yaml)")
        sp.add_argument("--chains", type=Path, help="alert chains (default escalation/chains.yaml)")
        sp.add_argument("--homes", type=Path, help="homes and devices (default devices/homes.yaml)")
        sp.add_argument("--staff", type=Path, help="staff and duty (default escalation/staff.yaml)")
        sp.add_argument(
            "--mqtt-credentials",
            type=Path,
            help="credentials.json of `broker config`: log in as rc-ingest and rc-notifier (env RC_MQTT_CREDENTIALS)",
        )

    run = sub.add_parser("run", help="run the service against a broker and Redis")
    service_flags(run)
    run.set_defaults(fn=cmd_run)

    demo = sub.add_parser("demo", help="start broker, Redis, service and simulator on this machine")
    service_flags(demo)
    demo.add_argument("--data-dir", type=Path, default=Path(".data/demo"))
    demo.add_argument("--sim-homes", type=int, default=20)
    demo.set_defaults(fn=cmd_demo)

    sub.add_parser("sim", help="device simulator (see `responsecentre sim --help`)", add_help=False)

    brk = sub.add_parser("broker", help="the MQTT broker's accounts, ACLs and TLS")
    bsub = brk.add_subparsers(dest="broker_command", required=True)
    bconf = bsub.add_parser("config", help="write mosquitto's config, password and ACL files from the directory")
    bconf.add_argument("--out", type=Path, required=True, help="the broker directory (files, persistence, pid)")
    bconf.add_argument("--homes", type=Path, help="homes and devices (default devices/homes.yaml)")
    bconf.add_argument("--staff", type=Path, help="staff (default escalation/staff.yaml)")
    bconf.add_argument("--simulator", action="store_true", help="add the rc-sim account for `responsecentre sim`")
    bconf.add_argument("--host", default="127.0.0.1", help="listen address, also a name in the TLS certificate")
    bconf.add_argument("--port", type=int, default=1883, help="plain MQTT port (default %(default)s)")
    bconf.add_argument("--tls-port", type=int, help="add a TLS listener on this port (CA made on first use)")
    bconf.add_argument("--reload", action="store_true", help="then SIGHUP the mosquitto running on --out")
    bconf.set_defaults(fn=cmd_broker_config)

    rules = sub.add_parser("rules", help="rule packs")
    rsub = rules.add_subparsers(dest="rules_command", required=True)
    check = rsub.add_parser("check", help="validate a rule pack")
    check.add_argument("file")
    check.set_defaults(fn=cmd_rules_check)
    explain = rsub.add_parser("explain", help="the rules in force for one home, with its overrides")
    explain.add_argument("--home", required=True, help="TENANT/HOME, e.g. vestby/h03")
    explain.add_argument("--rules", type=Path, help="rule pack (default rules/default.yaml, env RC_RULES_PATH)")
    explain.add_argument("--homes", type=Path, help="homes and devices (default devices/homes.yaml)")
    explain.add_argument("--catalog", type=Path, help="device catalogue (default catalog.yaml beside the homes)")
    explain.set_defaults(fn=cmd_rules_explain)
    reload = rsub.add_parser("reload", help="check a rule pack, then have the running service load it")
    reload.add_argument("--rules", type=Path, help="rule pack (default rules/default.yaml, env RC_RULES_PATH)")
    reload.add_argument("--redis", help="the service's Redis, redis://host:port/db (env RC_REDIS_URL)")
    reload.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the service (default 10)")
    reload.set_defaults(fn=cmd_rules_reload)

    add_roster_parser(sub)  # `roster who`: who is on duty (responsecentre/roster_cli.py)

    users = sub.add_parser("users", help="console and API users")
    usub = users.add_subparsers(dest="users_command", required=True)
    add = usub.add_parser("add", help="create or replace a user")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=["operator", "nurse", "admin", "integrator"])
    add.add_argument("--password", help="(prompted when left out)")
    add.add_argument("--staff-id")
    add.add_argument(
        "--tenant", action="append", required=True, help="a municipality the user may see (repeat for several)"
    )
    add.add_argument("--redis", help="redis://host:port/db (env RC_REDIS_URL)")
    add.set_defaults(fn=cmd_users_add)
    from responsecentre.web.admin import add_commands  # users unlock | passwd | token ...

    add_commands(usub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:  # the simulator owns its flags (argparse REMAINDER can't pass them)
        from responsecentre.sim.mqtt import main as sim_main

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return sim_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
