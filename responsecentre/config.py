"""Settings: the one place that reads the environment (`RC_*`) and the CLI's flags."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        u = urlparse(url if "://" in url else f"mqtt://{url}")
        if u.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"broker URL must be mqtt:// or mqtts://, not {url!r}")
        tls = u.scheme == "mqtts"
        return cls(u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883), u.username, u.password, tls)


@dataclass(frozen=True)
class Settings:
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    redis_url: str = "redis://127.0.0.1:6379/0"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    rules_path: Path = ROOT / "rules" / "default.yaml"
    chains_path: Path = ROOT / "escalation" / "chains.yaml"
    staff_path: Path = ROOT / "escalation" / "staff.yaml"
    homes_path: Path = ROOT / "devices" / "homes.yaml"
    # The MQTT client id is the persistent session: a restarted service with the same id
    # gets the messages that arrived while it was down. Our broker config (`responsecentre
    # broker config`) sets use_username_as_clientid, so there the session is the account's
    # (`rc-ingest`) and this id is ignored: nobody can take the session over by naming it.
    client_id: str = "responsecentre-ingest"
    # credentials.json of `responsecentre broker config`: ingest logs in as `rc-ingest`,
    # the notifiers as `rc-notifier`. None: both use the URL's user (or none).
    mqtt_credentials: Path | None = None
    session_expiry_s: int = 7 * 24 * 3600
    batch_max: int = 1000  # events per micro-batch
    batch_ms: int = 10  # how long a batch may wait to fill
    sweep_ms: int = 200  # deadline sweep and timer poll period
    snapshot_s: float = 2.0  # engine state snapshot period
    audit_ms: int = 5_000  # the escalation auditor's period (responsecentre/auditor.py)
    escalation_grace_ms: int = 5_000  # a step timer overdue by more than this is repaired
    # Device time is used when it is within this window of receive time, else receive time.
    max_clock_skew_future_ms: int = 5_000
    max_event_age_ms: int = 3_600_000
    secure_cookies: bool = False  # set behind TLS
    # Sign-ins and sessions (web/throttle.py, web/sessions.py; docs/security.md).
    metrics_token: str = ""  # /metrics wants `Authorization: Bearer <this>`; empty: /metrics is closed (403)
    session_idle_s: int = 30 * 60  # a console session unused this long ends (an open console is use)
    login_free_per_user: int = 5  # failures of a username before each attempt must wait 2^(n-free) s
    login_free_per_address: int = 20  # the same per client address
    login_max_delay_s: int = 15 * 60  # the longest such wait
    login_lockout_after: int = 10  # failures of a username that lock the account ...
    login_lockout_s: int = 30 * 60  # ... for this long, or until an admin unlocks it
    login_forget_s: int = 60 * 60  # failures are forgotten this long after the last one
    # Delivery channels beyond the handset (docs/channels.md); an empty value leaves the
    # channel out, and a person's delivery over it falls back to their next contact.
    webhook_secret: str = dataclasses.field(default="", repr=False)  # HMAC-SHA256 key for chain webhooks
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_from: str = ""
    smtp_security: str = "starttls"  # starttls | tls | none (a local relay or a test server only)
    smtp_username: str = ""
    smtp_password: str = dataclasses.field(default="", repr=False)
    sms_base_url: str = ""  # the SMS gateway adapter's base URL (docs/channels.md)
    sms_token: str = dataclasses.field(default="", repr=False)
    delivery_attempts: int = 5  # tries per channel (retryable failures) before falling back

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"RC_{f.name.upper()}")
            if raw is None:
                continue
            default = f.default
            if isinstance(default, bool):
                values[f.name] = raw.lower() in ("1", "true", "yes", "on")
            elif isinstance(default, int):
                values[f.name] = int(raw)
            elif isinstance(default, float):
                values[f.name] = float(raw)
            elif isinstance(default, Path) or f.type == "Path | None":
                values[f.name] = Path(raw)
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def mqtt(self) -> MqttUrl:
        return MqttUrl.parse(self.mqtt_url)
