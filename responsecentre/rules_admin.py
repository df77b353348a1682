"""Loading a rule pack into the running service: one path for SIGHUP, `POST
/api/rules/reload` and `responsecentre rules reload`, so that all three check the same.

A pack is *prepared* before anything changes: parsed (every mistake with its file:line),
checked against the alert chains, each home's time zone and `rules:` overrides applied
(engine.homes.home_params; a mistake names the home), the supervision intervals computed
with its grace from the catalogue and the homes, its `where` conditions compiled. Any
failure refuses the pack with its errors, and the running pack keeps running. A prepared
pack goes to the rule processor, which swaps it into the engine between two batches and
snapshots at once (processor.request_reload); the engine keeps the state of every rule
whose name and meaning did not change.

What a reload reads: the rules file (the service's own, `settings.rules_path`, for SIGHUP
and the HTTP route; the CLI sends the text of the file it checked) and the device
catalogue. The homes file is read at start only: its homes, devices, time zones and
overrides change with a restart.

The CLI reaches the service through Redis (store/keys.py): it XADDs a request (the pack's
text, its file name, a reply id) to `rc:rules:reload-requests` and waits on the reply list
`rc:rules:reload-reply:{id}` for up to RELOAD_REPLY_TIMEOUT_S. The service serves requests
with a blocking XREAD from where the stream stood when it started, so an old request
is never applied by a later service.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import numpy as np
import redis.asyncio as aioredis

from responsecentre.clock import Clock, system_clock
from responsecentre.config import ROOT, Settings
from responsecentre.directory import Directory, KindSpec, load_catalog
from responsecentre.engine import RulePack, parse_rules
from responsecentre.engine.conditions import Conditions, compile_conditions
from responsecentre.engine.homes import HomeParams, home_params
from responsecentre.escalation.chains import Chain
from responsecentre.faults import describe, is_outage, reraise_if_stopping
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS, RULES_REPLY_TTL_S, RULES_REQUESTS_MAXLEN, Keys
from responsecentre.store.records import AUDIT_MAXLEN, audit_record

if TYPE_CHECKING:
    from responsecentre.engine.tables import ReloadReport

log = logging.getLogger(__name__)

RELOAD_REPLY_TIMEOUT_S = 10.0  # how long the CLI waits for the service's answer
MAX_PACK_BYTES = 1024 * 1024  # a pack is a few KiB; a megabyte is a mistake (or an attack)
REQUEST_BLOCK_MS = 1000  # the request loop's blocking XREAD; shorter than the Redis socket timeout


class PackRefused(Exception):
    """A pack that may not replace the running one, with every reason (file:line first)."""

    def __init__(self, errors: list[str] | tuple[str, ...]) -> None:
        super().__init__("; ".join(errors))
        self.errors = tuple(errors)


@dataclass(frozen=True, eq=False)
class PreparedPack:
    """A pack checked against this service's chains, homes and catalogue: ready to swap in."""

    pack: RulePack
    homes: HomeParams
    supervision_ms: np.ndarray | None
    conditions: Conditions
    source: str  # the file it came from, as named in messages
    sha256: str  # of the file's text


@dataclass(frozen=True)
class ActivePack:
    """The pack in force, for GET /api/rules and the logs."""

    pack: RulePack
    source: str
    sha256: str
    loaded_at_ms: int
    trigger: str  # start, http, signal or cli


@dataclass(frozen=True)
class ReloadOutcome:
    """What a reload did: the new and previous pack's sha256, and the engine's report."""

    sha256: str
    previous_sha256: str
    source: str
    rules: int
    report: ReloadReport

    def summary(self) -> dict[str, Any]:
        """The JSON answer of the HTTP route and of the CLI's reply."""
        r = self.report
        return {
            "sha256": self.sha256,
            "previous_sha256": self.previous_sha256,
            "source": self.source,
            "rules": self.rules,
            "kept": list(r.kept),
            "reset": list(r.reset),
            "added": list(r.added),
            "removed": list(r.removed),
            "seconds": float(r.seconds),
        }


class Reloader(Protocol):
    """The rule processor's side of a reload (processor.RuleProcessor)."""

    def request_reload(
        self, pack: RulePack, homes: HomeParams, supervision_ms: np.ndarray | None, conditions: Conditions
    ) -> asyncio.Future[ReloadReport]: ...


# -- preparing a pack (pure apart from reading the catalogue) ---------------------------------


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_chains(pack: RulePack, chains: dict[str, Chain]) -> None:
    missing = sorted({r.chain for r in pack.rules} - set(chains))
    if missing:
        raise ValueError(f"rules name chains that escalation/chains.yaml does not define: {', '.join(missing)}")


def catalog_path(settings: Settings) -> Path | None:
    """The device catalogue: `catalog.yaml` beside the homes file (as the simulator reads
    it), else the repository's `devices/catalog.yaml`, else none."""
    for path in (settings.homes_path.with_name("catalog.yaml"), ROOT / "devices" / "catalog.yaml"):
        if path.is_file():
            return path
    return None


def supervision_intervals(pack: RulePack, directory: Directory, settings: Settings) -> np.ndarray | None:
    """Each device's supervision interval for the engine, from the catalogue and the
    homes with the pack's grace; None (nobody supervised) if the pack has no `supervise`."""
    grace = pack.supervision_grace
    if grace is None:
        return None
    path = catalog_path(settings)
    catalog: dict[str, KindSpec] = load_catalog(path) if path is not None else {}
    if not catalog:
        log.warning("no device catalogue found: devices are not supervised")
    return directory.supervision_ms(catalog, grace)


def prepare_pack(
    pack: RulePack, directory: Directory, chains: dict[str, Chain], settings: Settings, sha256: str = ""
) -> PreparedPack:
    """Check a parsed pack against this service; PackRefused with every reason found."""
    errors: list[str] = []
    try:
        check_chains(pack, chains)
    except ValueError as exc:
        errors.append(str(exc))
    homes: HomeParams | None = None
    try:
        homes = home_params(pack, directory.home_settings(), where=directory.home_wheres())
    except ValueError as exc:
        errors.append(str(exc))
    supervision: np.ndarray | None = None
    try:
        supervision = supervision_intervals(pack, directory, settings)
    except (OSError, ValueError) as exc:
        errors.append(f"supervision: {exc}")
    if errors or homes is None:
        raise PackRefused(errors)
    digest = sha256 or getattr(pack, "sha256", "") or ""
    return PreparedPack(pack, homes, supervision, compile_conditions(pack), pack.source, digest)


def prepare_text(
    text: str, source: str, directory: Directory, chains: dict[str, Chain], settings: Settings
) -> PreparedPack:
    """Parse and check a pack's text (`source` names it in messages)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PACK_BYTES:
        raise PackRefused([f"{source}: larger than {MAX_PACK_BYTES // 1024} KiB; is it a rule pack?"])
    try:
        pack = parse_rules(text, source=source)
    except ValueError as exc:  # RuleError: "file:line: message"
        raise PackRefused([str(exc)]) from None
    return prepare_pack(pack, directory, chains, settings, text_sha256(text))


def read_pack_text(path: Path) -> str:
    """The file's text; PackRefused for a file that cannot be read or is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PackRefused([f"{path}:1: not UTF-8 text ({exc.reason})"]) from None
    except OSError as exc:
        raise PackRefused([f"{path}: cannot be read ({exc.strerror or exc})"]) from None


# -- the service's side ------------------------------------------------------------------------


@dataclass
class RulesAdmin:
    """The pack in force and the one way to replace it (see the module docstring)."""

    settings: Settings
    directory: Directory
    chains: dict[str, Chain]
    redis: aioredis.Redis
    metrics: Metrics
    active: ActivePack
    clock: Clock = system_clock
    keys: Keys = KEYS
    processor: Reloader | None = None  # set once the service runs its rule processor
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    # Set once `serve_requests` knows where the request stream stood (tests wait on it).
    serving: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    @classmethod
    def at_start(
        cls,
        prepared: PreparedPack,
        settings: Settings,
        directory: Directory,
        chains: dict[str, Chain],
        redis: aioredis.Redis,
        metrics: Metrics,
        clock: Clock = system_clock,
    ) -> RulesAdmin:
        now = clock()
        metrics.rules_loaded_at.set(now / 1000)
        active = ActivePack(prepared.pack, prepared.source, prepared.sha256, now, "start")
        return cls(settings, directory, chains, redis, metrics, active, clock)

    async def reload(
        self,
        trigger: str,
        by: str,
        role: str | None = None,
        text: str | None = None,
        source: str | None = None,
    ) -> ReloadOutcome:
        """Load `text` (named `source`), or else the service's rules file, and swap it in.

        PackRefused if the pack is broken, does not fit the chains or homes, or the engine
        is not running; the running pack then stays. Every attempt is audited as
        `rules_reload` (outcome applied or refused) and counted in
        responsecentre_rules_reloads_total{trigger, outcome}."""
        async with self._lock:
            previous = self.active
            name = source or str(self.settings.rules_path)
            digest = text_sha256(text) if text is not None else ""
            try:
                if text is None:
                    text = read_pack_text(self.settings.rules_path)
                    digest = text_sha256(text)
                prepared = await asyncio.to_thread(prepare_text, text, name, self.directory, self.chains, self.settings)
                if self.processor is None:
                    raise PackRefused(["the rule engine is not running yet; try again in a moment"])
                future = self.processor.request_reload(
                    prepared.pack, prepared.homes, prepared.supervision_ms, prepared.conditions
                )
                try:
                    report = await future
                except Exception as exc:  # the engine refused it whole
                    raise PackRefused([f"the engine refused the pack: {describe(exc)}"]) from None
            except PackRefused as refused:
                self.metrics.rules_reloads.labels(trigger, "refused").inc()
                log.warning(
                    "rules: reload (%s) of %s refused; %s stays in force: %s",
                    trigger, name, previous.sha256[:12], "; ".join(refused.errors),
                )  # fmt: skip
                await self._audit(
                    by, role, outcome="refused", trigger=trigger, source=name, sha256=digest,
                    previous=previous.sha256, errors=" | ".join(refused.errors)[:2000],
                )  # fmt: skip
                raise
            now = self.clock()
            self.active = ActivePack(prepared.pack, name, prepared.sha256, now, trigger)
            self.metrics.rules_reloads.labels(trigger, "applied").inc()
            self.metrics.rules_loaded_at.set(now / 1000)
            outcome = ReloadOutcome(prepared.sha256, previous.sha256, name, len(prepared.pack.rules), report)
            log.info(
                "rules: reloaded (%s) %s sha256 %s (was %s): %d rules; kept %d, reset %d, added %d, removed %d "
                "in %.1f ms",
                trigger, name, prepared.sha256[:12], previous.sha256[:12], outcome.rules, len(report.kept),
                len(report.reset), len(report.added), len(report.removed), report.seconds * 1000,
            )  # fmt: skip
            await self._audit(
                by, role, outcome="applied", trigger=trigger, source=name, sha256=prepared.sha256,
                previous=previous.sha256, kept=",".join(report.kept), reset=",".join(report.reset),
                added=",".join(report.added), removed=",".join(report.removed), seconds=f"{report.seconds:.6f}",
            )  # fmt: skip
            return outcome

    async def reload_on_signal(self) -> None:
        """SIGHUP: reload the service's rules file; the result goes to the log."""
        try:
            await self.reload("signal", "signal:SIGHUP")
        except PackRefused:
            pass  # logged and audited by reload()
        except Exception as exc:
            reraise_if_stopping()
            log.error("rules: reload on SIGHUP failed (%s); the running pack stays", describe(exc))

    async def _audit(self, by: str, role: str | None, **detail: str) -> None:
        """Rule changes are configuration changes: kept with who asked, like any other."""
        try:
            await self.redis.xadd(
                self.keys.audit(),
                audit_record(self.clock(), by, "rules_reload", role, **detail),
                maxlen=AUDIT_MAXLEN,
                approximate=True,
            )
        except Exception as exc:
            reraise_if_stopping()
            log.error("rules: the reload could not be audited (%s)", describe(exc))

    def view(self) -> dict[str, Any]:
        """GET /api/rules: which pack is in force, and per rule what it is and its meaning hash."""
        a = self.active
        return {
            "source": a.source,
            "sha256": a.sha256,
            "loaded_at_ms": a.loaded_at_ms,
            "loaded_by": a.trigger,
            "rules": [
                {
                    "name": rule.name,
                    "kind": str(rule.kind),
                    "action": rule.action,
                    "alarm": rule.alarm,
                    "priority": str(rule.priority),
                    "chain": rule.chain,
                    "meaning": rule.meaning,
                }
                for rule in a.pack.rules
            ],
        }

    # -- the CLI's requests through Redis ----------------------------------------------------

    async def serve_requests(self) -> None:
        """Answer `responsecentre rules reload` (see the module docstring). Never ends by
        itself: a broken request gets a refusal, a Redis outage a retry."""
        stream = self.keys.rules_reload_requests()
        cursor: str | None = None
        while True:
            reraise_if_stopping()  # a stop that a wait_for swallowed (processor.py)
            try:
                if cursor is None:
                    last = await self.redis.xrevrange(stream, count=1)
                    cursor = _text(last[0][0]) if last else "0-0"
                    self.serving.set()
                reply = await self.redis.xread({stream: cursor}, count=10, block=REQUEST_BLOCK_MS)
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        cursor = _text(entry_id)
                        await self._answer(fields)
            except Exception as exc:
                reraise_if_stopping()
                if is_outage(exc):
                    log.warning("rules: reload requests: redis unavailable (%s); retrying", exc)
                else:
                    log.error("rules: reload requests failed (%s); retrying", describe(exc))
                await asyncio.sleep(1.0)

    async def _answer(self, fields: dict[bytes, bytes]) -> None:
        reply_id = _text(fields.get(b"reply", b""))
        if not reply_id:
            log.warning("rules: a reload request without a reply id; ignored")
            return
        try:
            text = fields[b"text"].decode("utf-8")
            source = _text(fields.get(b"source", b"")) or "<cli>"
            if text_sha256(text) != _text(fields.get(b"sha256", b"")):
                raise PackRefused([f"{source}: the request arrived damaged (its sha256 does not match); send it again"])
            by = f"cli:{_text(fields.get(b'user', b''))[:64] or 'unknown'}"
            answer: dict[str, Any] = {"ok": True, **(await self.reload("cli", by, text=text, source=source)).summary()}
        except PackRefused as refused:
            answer = {"ok": False, "errors": list(refused.errors)}
        except (KeyError, UnicodeDecodeError):
            answer = {"ok": False, "errors": ["the request carries no pack text in UTF-8"]}
        key = self.keys.rules_reload_reply(reply_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, msgspec.json.encode(answer))
            pipe.expire(key, RULES_REPLY_TTL_S)
            await pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- the CLI's side ----------------------------------------------------------------------------


async def ask_service(
    redis: aioredis.Redis,
    text: str,
    source: str,
    user: str,
    timeout_s: float = RELOAD_REPLY_TIMEOUT_S,
    keys: Keys = KEYS,
) -> dict[str, Any] | None:
    """Send a pack to the running service and wait for its answer; None if none came
    (the request is then withdrawn, so a service that comes later does not apply it)."""
    reply_id = uuid.uuid4().hex
    entry = await redis.xadd(
        keys.rules_reload_requests(),
        {"reply": reply_id, "source": source, "text": text, "sha256": text_sha256(text), "user": user},
        maxlen=RULES_REQUESTS_MAXLEN,
        approximate=True,
    )
    got = await redis.blpop([keys.rules_reload_reply(reply_id)], timeout=timeout_s)
    if got is None:
        await redis.xdel(keys.rules_reload_requests(), entry)
        # The service may have taken it in the last moment: its answer still counts.
        late = await redis.lpop(keys.rules_reload_reply(reply_id))
        return None if late is None else msgspec.json.decode(late)
    return msgspec.json.decode(got[1])  # type: ignore[no-any-return]
