"""Every Redis key the centre uses, named in one place.

Per-tenant data carries the tenant in its key (`rc:{tenant}:...`) so that a tenant can
later move to a shard of its own; only the cross-tenant queues (timers, outbox, feed,
dead letters) are global.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "rc"

    def events(self, tenant: str) -> str:
        """Stream: the durable event log of a tenant (ingest writes, the engine reads)."""
        return f"{self.prefix}:{tenant}:events"

    def seen(self, tenant: str, device_id: str, event_id: str) -> str:
        """String with a TTL: this (device, event id) is stored; redelivery is a no-op."""
        return f"{self.prefix}:{tenant}:seen:{device_id}:{event_id}"

    def device_status(self, tenant: str) -> str:
        """Hash: device id -> its latest retained status (online, battery, ts, received)."""
        return f"{self.prefix}:{tenant}:device-status"

    def dead_letters(self) -> str:
        """Stream: inbound messages that broke the contract, with the reason."""
        return f"{self.prefix}:deadletters"

    def parked(self) -> str:
        """Stream: stored entries a stage failed on (a bug), parked with their position so
        the stage goes on; the rule processor's events, the outbox's undeliverable pages."""
        return f"{self.prefix}:parked"

    def alarm(self, tenant: str, alarm_id: str) -> str:
        """String: the alarm record (msgspec JSON)."""
        return f"{self.prefix}:{tenant}:alarm:{alarm_id}"

    def timeline(self, tenant: str, alarm_id: str) -> str:
        """List: the alarm's timeline entries, append-only."""
        return f"{self.prefix}:{tenant}:alarm:{alarm_id}:timeline"

    def open_alarms(self, tenant: str) -> str:
        """Hash: "{home}|{kind}" -> id of the one open alarm for that pair."""
        return f"{self.prefix}:{tenant}:alarms:open"

    def alarm_index(self, tenant: str) -> str:
        """Sorted set: every alarm id of the tenant, scored by when it was raised."""
        return f"{self.prefix}:{tenant}:alarms"

    def alarm_tenants(self) -> str:
        """Hash: alarm id -> tenant, so the API can address alarms by id alone."""
        return f"{self.prefix}:alarm-tenant"

    def cause(self, tenant: str, cause: str) -> str:
        """String with a TTL: this engine decision has been applied (replay is a no-op)."""
        return f"{self.prefix}:{tenant}:cause:{cause}"

    def timers(self) -> str:
        """Sorted set: escalation timers, member "{tenant}|{alarm}|{step}|{round}|{turn}|{epoch}"
        (older members have only the first four), score due ms."""
        return f"{self.prefix}:timers"

    def outbox(self) -> str:
        """Stream: notifications to deliver, written in the same transaction as the alarm."""
        return f"{self.prefix}:outbox"

    def incident_group(self, tenant: str, kind: str) -> str:
        """String: the incidents state of (tenant, alarm kind) (escalation.incidents.GroupState)."""
        return f"{self.prefix}:{tenant}:incident-group:{kind}"

    def delivery_dead_letters(self) -> str:
        """Stream: deliveries that got no receipt on any channel (deliveries.deadletter)."""
        return f"{self.prefix}:deliveries:dead"

    def feed(self) -> str:
        """Stream: every alarm change, for the console's WebSocket (resumable by id)."""
        return f"{self.prefix}:feed"

    def engine_cursor(self) -> str:
        """Hash: tenant -> id of the last event-log entry the engine has applied."""
        return f"{self.prefix}:engine:cursor"

    def engine_snapshot(self) -> str:
        """Hash: the engine's state blob and the cursor it belongs to."""
        return f"{self.prefix}:engine:snapshot"

    def users(self) -> str:
        """Hash: username -> user record (role, argon2 hash)."""
        return f"{self.prefix}:users"

    def audit(self) -> str:
        """Stream: every login, every view of resident data, every action."""
        return f"{self.prefix}:audit"

    def session(self, session_id: str) -> str:
        """Hash with an idle TTL: one console session (username, csrf, created, expires).
        `session_id` is sha256 of the cookie, so a copy of Redis holds no usable cookie."""
        return f"{self.prefix}:session:{session_id}"

    def user_sessions(self, username: str) -> str:
        """Sorted set: the user's session ids, scored by when each expires at the latest;
        logout removes one, a password change or deletion all of them."""
        return f"{self.prefix}:user:{username}:sessions"

    def api_token(self, token_id: str) -> str:
        """Hash: one API token (username, label, sha256 of its secret, created, last used)."""
        return f"{self.prefix}:token:{token_id}"

    def user_tokens(self, username: str) -> str:
        """Set: the ids of the user's API tokens."""
        return f"{self.prefix}:user:{username}:tokens"

    def login_failures_user(self, username: str) -> str:
        """Hash with a TTL: failed sign-ins for this attempted username (n, last, locked)."""
        return f"{self.prefix}:login-failures:user:{username}"

    def login_failures_address(self, address: str) -> str:
        """Hash with a TTL: failed sign-ins from this client address (n, last)."""
        return f"{self.prefix}:login-failures:address:{address}"

    def staff_alarms(self, tenant: str, staff_id: str) -> str:
        """Sorted set: ids of the alarms paged to a staff member, scored by when first paged;
        a nurse sees and acts on these (web/scope.py)."""
        return f"{self.prefix}:{tenant}:staff:{staff_id}:alarms"

    def silences(self, tenant: str) -> str:
        """Hash: silence id -> a planned silence set over the API (msgspec JSON, suppression.py)."""
        return f"{self.prefix}:{tenant}:silences"

    def home_statuses(self, tenant: str) -> str:
        """Hash: home id -> its away / in_hospital status set over the API, with since and until."""
        return f"{self.prefix}:{tenant}:home-status"

    def maintenance(self, tenant: str) -> str:
        """Hash: device id -> its maintenance interval set over the API."""
        return f"{self.prefix}:{tenant}:maintenance"

    def suppression_version(self) -> str:
        """String: bumped in the same transaction as every change above; the rule processor
        polls it (one GET) and reloads its suppression index when it moved."""
        return f"{self.prefix}:suppression:version"

    def rules_reload_requests(self) -> str:
        """Stream: `responsecentre rules reload` asking the running service to load a pack
        (the pack's text, its file name and a reply id); the service reads it with a
        blocking XREAD from where the stream stood when it started (rules_admin.py)."""
        return f"{self.prefix}:rules:reload-requests"

    def rules_reload_reply(self, request_id: str) -> str:
        """List with a TTL: the service's answer to one reload request (JSON), for the CLI's BLPOP."""
        return f"{self.prefix}:rules:reload-reply:{request_id}"


KEYS = Keys()

OUTBOX_GROUP = "notifiers"
SEEN_TTL_S = 7 * 24 * 3600
CAUSE_TTL_S = 7 * 24 * 3600
FEED_MAXLEN = 10_000
DEAD_LETTER_MAXLEN = 100_000
PARKED_MAXLEN = 100_000
RULES_REQUESTS_MAXLEN = 100
RULES_REPLY_TTL_S = 60
