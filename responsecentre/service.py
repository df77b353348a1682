"""The service: builds the parts from settings and runs their loops under one TaskGroup.

This is the only place that creates long-running tasks. If one loop dies the group
cancels the others and the process exits non-zero, so a supervisor restarts a whole,
consistent service rather than one with a silently dead escalation loop. (No input can
end a loop: each isolates a failing message, see `faults.py`; only a dead dependency
that the loop cannot wait out, like an HTTP port it cannot bind, ends the group.)

Stopping is bounded: SIGINT or SIGTERM cancels the group, and a watchdog thread ends
the process after SHUTDOWN_GRACE_S whatever a task is doing (a Redis read that hangs on
a dead server, say). Everything the service must not lose is in Redis or unacked at
the broker, so a hard exit loses nothing; it only skips the last engine snapshot.

SIGHUP does not stop `responsecentre run`: it reloads the rules file (rules_admin.py), as
`POST /api/rules/reload` and `responsecentre rules reload` do; a broken pack is refused
and logged, and the running one stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Generator
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis
import uvicorn
import yaml
from fastapi import FastAPI
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from responsecentre.alarms.desk import AlarmDesk
from responsecentre.auditor import run_auditor
from responsecentre.broker import INGEST, NOTIFIER, REPLIES, load_credentials
from responsecentre.clock import Clock, system_clock
from responsecentre.config import MqttUrl, Settings
from responsecentre.contract import REPLIES_SUBSCRIPTION
from responsecentre.deliveries.email import SmtpSecurity
from responsecentre.deliveries.handset import PageLink
from responsecentre.deliveries.registry import DeliverySettings, Notifiers
from responsecentre.deliveries.retry import RetryPolicy
from responsecentre.directory import Directory, load_directory
from responsecentre.engine import Engine, RulePack, load_rules
from responsecentre.escalation.chains import Chain, ChainBook, load_book
from responsecentre.escalation.incidents import IncidentConfig, parse_incident_config
from responsecentre.faults import Faults
from responsecentre.ingest.log import EventLog
from responsecentre.ingest.mqtt import BrokerLink
from responsecentre.ingest.pipeline import Ingest
from responsecentre.metrics import Metrics
from responsecentre.notifier import IntegrationPublisher, MqttPager, run_notifiers
from responsecentre.processor import RuleProcessor
from responsecentre.replies import ReplyDesk
from responsecentre.rules_admin import (  # check_chains & co. are re-exported for callers of this module
    PackRefused,
    RulesAdmin,
    catalog_path,
    check_chains,
    prepare_pack,
    supervision_intervals,
)
from responsecentre.store.rosters import sync_rosters, watch_rosters
from responsecentre.timers import run_timers
from responsecentre.web.app import AppContext, create_app
from responsecentre.web.auth import Users
from responsecentre.web.throttle import LoginLimits

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 8.0  # within the 10 s a supervisor (or an operator) waits
REDIS_SOCKET_TIMEOUT_S = 5.0  # longer than any blocking read we issue (at most 1 s)


class _Server(uvicorn.Server):
    """uvicorn inside our TaskGroup: signals belong to the CLI, not to uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def mqtt_accounts(settings: Settings) -> tuple[MqttUrl, MqttUrl, MqttUrl]:
    """The broker URLs of ingest, the notifiers and the reply desk: each its own account
    from the credentials file when one is set (the broker's ACL gives each only its own
    job), else the URL's own user for all three."""
    url = settings.mqtt
    if settings.mqtt_credentials is None:
        return url, url, url
    if not settings.mqtt_credentials.is_file():
        raise ValueError(f"MQTT credentials file {settings.mqtt_credentials} does not exist")
    credentials = load_credentials(settings.mqtt_credentials)
    missing = [name for name in (INGEST, NOTIFIER, REPLIES) if name not in credentials]
    if missing:
        raise ValueError(f"{settings.mqtt_credentials} has no password for {', '.join(missing)}")
    return (
        replace(url, username=INGEST, password=credentials[INGEST]),
        replace(url, username=NOTIFIER, password=credentials[NOTIFIER]),
        replace(url, username=REPLIES, password=credentials[REPLIES]),
    )


def delivery_settings(settings: Settings) -> DeliverySettings:
    """The channels' part of the settings (an empty one leaves its channel out)."""
    return DeliverySettings(
        webhook_secret=settings.webhook_secret,
        smtp_host=settings.smtp_host,
        smtp_port=settings.smtp_port,
        smtp_from=settings.smtp_from,
        smtp_security=SmtpSecurity(settings.smtp_security),
        smtp_username=settings.smtp_username,
        smtp_password=settings.smtp_password,
        sms_base_url=settings.sms_base_url,
        sms_token=settings.sms_token,
    )


__all__ = ["Service", "catalog_path", "check_chains", "mqtt_accounts", "run_until_signalled", "supervision_intervals"]


class Service:
    def __init__(
        self,
        settings: Settings,
        directory: Directory | None = None,
        pack: RulePack | None = None,
        chains: ChainBook | dict[str, Chain] | None = None,
        metrics: Metrics | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self.directory = directory or load_directory(settings.homes_path, settings.staff_path)
        pack = pack or load_rules(settings.rules_path)  # its sha256 is its file's
        incidents = IncidentConfig()
        if chains is None:
            chains = load_book(settings.chains_path)
            # The same file's `incidents:` section (docs/chains.md): which kinds group.
            incidents = parse_incident_config(yaml.safe_load(settings.chains_path.read_text()))
        self.book = chains if isinstance(chains, ChainBook) else ChainBook(dict(chains))
        self.chains = self.book.chains
        try:  # the same checks as a reload (rules_admin.py): chains, homes' overrides, catalogue
            prepared = prepare_pack(pack, self.directory, self.chains, settings)
        except PackRefused as refused:
            raise ValueError("; ".join(refused.errors)) from None
        self.metrics = metrics or Metrics()
        self.faults = Faults()
        self.clock = clock
        # After a Redis restart every pooled connection is dead; retrying on a fresh one
        # makes the first requests after the restart succeed instead of failing.
        self.redis = aioredis.Redis.from_url(
            settings.redis_url,
            health_check_interval=10,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            # Every Redis wait is bounded: a server that stops answering (not closing)
            # must not hold a loop, or the shutdown, for ever.
            socket_timeout=REDIS_SOCKET_TIMEOUT_S,
            socket_connect_timeout=2.0,
        )
        self.desk = AlarmDesk(self.redis, self.directory, self.book, self.metrics, incidents=incidents)
        self.delivery_settings = delivery_settings(settings)  # a wrong RC_SMTP_SECURITY fails here
        self.users = Users(self.redis)
        self.engine = Engine(  # compiles/loads kernels now
            pack, self.directory.device_home(), prepared.supervision_ms, homes=prepared.homes
        )
        self.rules = RulesAdmin.at_start(
            prepared, settings, self.directory, self.chains, self.redis, self.metrics, clock=self.clock
        )
        self.started = asyncio.Event()
        self._server: _Server | None = None
        self.ingest_url, self.notifier_url, self.replies_url = mqtt_accounts(
            settings
        )  # a missing password fails here, not later
        self.link: BrokerLink | None = None
        self.replies_link: BrokerLink | None = None
        self.publisher: PageLink | None = None
        self.processor: RuleProcessor | None = None

    @property
    def pack(self) -> RulePack:
        """The rule pack in force (a reload replaces it)."""
        return self.rules.active.pack

    def build_app(self) -> FastAPI:
        def broker_ready() -> tuple[bool, str]:
            if self.publisher is not None and not self.publisher.connected.is_set():
                return (False, "broker: the notifier is not connected")
            return (self.link is not None and self.link.connected.is_set(), "broker: not connected")

        def engine_ready() -> tuple[bool, str]:
            return (self.processor is not None and self.processor.caught_up.is_set(), "engine: replaying the event log")

        def stages_ready() -> tuple[bool, str]:
            failing = self.faults.failing(self.clock())
            return (not failing, "; ".join(f"{stage}: {why}" for stage, why in failing.items()))

        ctx = AppContext(
            redis=self.redis,
            desk=self.desk,
            directory=self.directory,
            metrics=self.metrics,
            users=self.users,
            secure_cookies=self.settings.secure_cookies,
            ready_checks=[broker_ready, engine_ready, stages_ready],
            clock=self.clock,
            metrics_token=self.settings.metrics_token,
            login_limits=LoginLimits.from_settings(self.settings),
            session_idle_s=self.settings.session_idle_s,
            rules=self.rules,
        )
        if not self.settings.metrics_token:
            log.warning("RC_METRICS_TOKEN is not set: /metrics answers 403 until it is")
        return create_app(ctx)

    async def run(self) -> None:
        s = self.settings
        app = self.build_app()
        self.link = BrokerLink(self.ingest_url, s.client_id, s.session_expiry_s, self.metrics, clock=self.clock)
        self.publisher = PageLink(self.notifier_url, f"{s.client_id}-notifier")
        self.replies_link = BrokerLink(
            self.replies_url,
            f"{s.client_id}-replies",
            s.session_expiry_s,
            self.metrics,
            clock=self.clock,
            subscription=REPLIES_SUBSCRIPTION,
        )
        replies = ReplyDesk(
            self.replies_link, self.publisher, self.desk, self.redis, self.metrics, self.faults, self.clock
        )
        ingest = Ingest(self.link, EventLog(self.redis), self.directory, self.metrics, s, self.faults, self.clock)
        self.processor = RuleProcessor(
            self.redis, self.engine, self.directory, self.desk, self.metrics, s, faults=self.faults, clock=self.clock
        )
        self.rules.processor = self.processor
        notifiers = [MqttPager(self.publisher), IntegrationPublisher(self.publisher)]
        deliveries = Notifiers.from_settings(self.delivery_settings, self.publisher, clock=self.clock)
        # h11 explicitly, with its header cap: an oversized header gets a 400 and the
        # connection closed, and installing httptools must not quietly lift the cap.
        config = uvicorn.Config(
            app,
            host=s.http_host,
            port=s.http_port,
            log_level="warning",
            lifespan="off",
            ws="auto",
            http="h11",
            h11_max_incomplete_event_size=16 * 1024,
            # The client address is the socket's: X-Forwarded-For is whatever a client says,
            # and the sign-in throttle counts failures per address (web/throttle.py).
            proxy_headers=False,
        )
        self._server = _Server(config)
        self.link.start()
        self.publisher.start()
        self.replies_link.start()
        try:
            with contextlib.suppress(Exception):  # Redis not up yet: watch_rosters catches up
                await asyncio.wait_for(sync_rosters(self.redis, self.directory), 5.0)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(watch_rosters(self.redis, self.directory), name="rosters")
                tg.create_task(ingest.run(), name="ingest")
                tg.create_task(self.processor.run(), name="rules")
                tg.create_task(replies.run(), name="replies")
                tg.create_task(self.rules.serve_requests(), name="rules-reload")
                tg.create_task(
                    run_timers(
                        self.redis, self.desk, s.sweep_ms, clock=self.clock, faults=self.faults, metrics=self.metrics
                    ),
                    name="timers",
                )
                tg.create_task(
                    run_auditor(
                        self.redis,
                        self.desk,
                        s.audit_ms,
                        s.escalation_grace_ms,
                        self.metrics,
                        clock=self.clock,
                        faults=self.faults,
                    ),
                    name="auditor",
                )
                tg.create_task(
                    run_notifiers(
                        self.redis,
                        notifiers,
                        self.metrics,
                        faults=self.faults,
                        clock=self.clock,
                        deliveries=deliveries,
                        policy=RetryPolicy(attempts=max(1, s.delivery_attempts)),
                    ),
                    name="notifiers",
                )
                tg.create_task(self._serve(), name="http")
        finally:
            self.link.stop()
            self.replies_link.stop()
            self.publisher.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(deliveries.aclose(), 1.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.processor.snapshot(), 2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.redis.aclose(), 1.0)

    async def _serve(self) -> None:
        assert self._server is not None
        serve = asyncio.create_task(self._server.serve())
        while not self._server.started and not serve.done():
            await asyncio.sleep(0.01)
        self.started.set()
        try:
            await serve
        except asyncio.CancelledError:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(serve, 5)
            raise
        # uvicorn returned by itself (it could not bind, say): stop the whole service.
        raise RuntimeError(f"HTTP server on {self.settings.http_host}:{self.settings.http_port} stopped")


def _watchdog(grace_s: float, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """End the process if a graceful stop has not finished within `grace_s`; first say
    what was still running (the loop's tasks, every thread's stack) on stderr, so that a
    stop that hangs can be explained afterwards."""

    def expire() -> None:
        log.error("shutdown did not finish within %.0f s; exiting now", grace_s)
        with contextlib.suppress(Exception):  # another thread's loop: best effort only
            for task in list(asyncio.all_tasks(loop)) if loop is not None else []:
                task.print_stack(limit=4, file=sys.stderr)
        with contextlib.suppress(Exception):
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        logging.shutdown()
        os._exit(3)

    timer = threading.Timer(grace_s, expire)
    timer.daemon = True
    timer.start()


async def run_until_signalled(
    main: Any, grace_s: float = SHUTDOWN_GRACE_S, on_hangup: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Run `main` (a coroutine) until SIGINT or SIGTERM; then cancel it, and if it has not
    stopped within `grace_s`, end the process (see the module's docstring). SIGHUP runs
    `on_hangup` (the service: reload the rules), one at a time; without it SIGHUP stops too."""
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    hangups: set[asyncio.Task[None]] = set()  # referenced until done, or the loop may drop them

    def stop(name: str) -> None:
        if not task.done() and not task.cancelling():
            log.info("%s: stopping (at most %.0f s)", name, grace_s)
            _watchdog(grace_s, loop)
            task.cancel()

    def hangup() -> None:
        if on_hangup is None:
            stop("SIGHUP")
        elif not task.done() and not task.cancelling():
            log.info("SIGHUP: reloading the rules")
            job = loop.create_task(on_hangup(), name="sighup")
            hangups.add(job)
            job.add_done_callback(hangups.discard)

    stops = (signal.SIGINT, signal.SIGTERM)
    for sig in stops:
        loop.add_signal_handler(sig, stop, sig.name)
    loop.add_signal_handler(signal.SIGHUP, hangup)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        for sig in (*stops, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        for job in hangups:
            job.cancel()
