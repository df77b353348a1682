"""The broker's accounts, ACLs and TLS files, generated from the directory.

The contract takes a device's identity from its topic, never its payload, so whoever may
publish on `rc/v1/{tenant}/devices/{device_id}/events` speaks for that device. The broker
is therefore what makes an event trustworthy: every device, handset, integration and
centre process logs in with an account of its own, and mosquitto's ACL lets each touch
only its own topics. This module turns the directory (homes, devices, staff) into
mosquitto's own mechanisms, so no plugin runs inside the broker:

- `passwd`: `username:$7$...` lines, PBKDF2-SHA512 as mosquitto 2.0's `mosquitto_passwd`
  writes them (no plaintext);
- `acl`: `user <name>` blocks of `topic <read|write|readwrite> <pattern>` lines;
- `mosquitto.conf`: no anonymous clients, `use_username_as_clientid` (the client id is
  the account, so nobody can take over the centre's persistent session by naming its
  client id), a pid file for reloads, and an optional TLS listener;
- `credentials.json` (mode 0600): each account's password, for the demo to print and the
  centre and simulator to log in with. Regenerating keeps the passwords of accounts that
  remain, makes new ones for new accounts and drops the accounts that went away;
- `ca.crt`/`ca.key`, `server.crt`/`server.key`: a CA and a server certificate, made on
  first use and kept afterwards (devices are provisioned with the CA certificate).

After a regeneration, SIGHUP makes mosquitto reload its password and ACL files: a new
device can connect, and a removed one is disconnected and refused (`signal_reload`).
Everything here is pure generation plus file writes; no broker is contacted.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import secrets
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from responsecentre import contract
from responsecentre.directory import Directory

INGEST = "rc-ingest"
NOTIFIER = "rc-notifier"
REPLIES = "rc-replies"  # reads the handsets' replies (a persistent session: none lost while the centre is down)
SIMULATOR = "rc-sim"
# mosquitto 2.0's default for `$7$` hashes. The passwords are random (192 bits), so more
# rounds would buy no safety and cost every CONNECT (a reconnect storm after a restart).
HASH_ITERATIONS = 101
PASSWORD_BYTES = 24
LOCAL_NAMES = ("127.0.0.1", "::1", "localhost")
CA_DAYS = 3650
SERVER_DAYS = 825  # the longest validity clients commonly accept for a server certificate

_USERNAME = re.compile(r"[A-Za-z0-9._/-]{1,200}")
_TOPIC = re.compile(r"[^\s\x00]{1,500}")


class Access(StrEnum):
    """What an ACL line allows: subscribe and receive, publish, or both."""

    READ = "read"
    WRITE = "write"
    READWRITE = "readwrite"


@dataclass(frozen=True, slots=True)
class Grant:
    access: Access
    topic: str  # an MQTT topic filter (`+` and `#` allowed)


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    grants: tuple[Grant, ...]


def device_username(tenant: str, device_id: str) -> str:
    return f"device/{tenant}/{device_id}"


def handset_username(tenant: str, staff_id: str) -> str:
    return f"handset/{tenant}/{staff_id}"


def integrator_username(tenant: str) -> str:
    return f"integrator/{tenant}"


def commands_topic(tenant: str, device_id: str) -> str:
    return f"{contract.PREFIX}/{tenant}/devices/{device_id}/commands"


replies_topic = contract.replies_topic


def _id(kind: str, token: str) -> str:
    """Ids become ACL topics and usernames: one outside the contract's token alphabet (a
    `+`, a `#`, a `/`, a newline) would widen a grant or inject a line, so it is refused."""
    if not contract._valid_token(token):
        raise ValueError(f"{kind} {token!r} is not a valid id (1-64 of A-Z a-z 0-9 - _ .)")
    return token


def centre_accounts() -> list[Account]:
    """The centre's three connections. The reply desk reads the handsets' replies; the
    notifier answers each on its outcome topic. Ingest reads all of `devices/#` (not just events and
    status) so that a message on a malformed device topic is dead-lettered, not unseen."""
    p = contract.PREFIX
    return [
        Account(INGEST, (Grant(Access.READ, contract.DEVICES_SUBSCRIPTION),)),
        Account(
            NOTIFIER,
            (
                Grant(Access.WRITE, f"{p}/+/alarms/#"),
                Grant(Access.WRITE, f"{p}/+/staff/+/pages"),
                Grant(Access.WRITE, f"{p}/+/staff/+/replies/outcome"),
                Grant(Access.WRITE, f"{p}/+/devices/+/commands"),
            ),
        ),
        Account(REPLIES, (Grant(Access.READ, contract.REPLIES_SUBSCRIPTION),)),
    ]


def simulator_account(tenants: Iterable[str]) -> Account:
    """Exactly what `responsecentre sim` publishes: events and retained statuses of any
    device of its tenants, and its own online status (`sim.mqtt.sentinel_topic`, its Last
    Will). It subscribes to nothing, so it may read nothing."""
    from responsecentre.sim.mqtt import sentinel_topic

    grants: list[Grant] = []
    for tenant in sorted(set(tenants)):
        _id("tenant", tenant)
        grants += [
            Grant(Access.WRITE, contract.events_topic(tenant, "+")),
            Grant(Access.WRITE, contract.status_topic(tenant, "+")),
            Grant(Access.WRITE, sentinel_topic(tenant)),
        ]
    return Account(SIMULATOR, tuple(grants))


def device_account(tenant: str, device_id: str) -> Account:
    """Its own events; its own status, read and write (retained, and its Last Will); its
    own commands."""
    _id("tenant", tenant)
    _id("device id", device_id)
    return Account(
        device_username(tenant, device_id),
        (
            Grant(Access.WRITE, contract.events_topic(tenant, device_id)),
            Grant(Access.READWRITE, contract.status_topic(tenant, device_id)),
            Grant(Access.READ, commands_topic(tenant, device_id)),
        ),
    )


def handset_account(tenant: str, staff_id: str) -> Account:
    _id("tenant", tenant)
    _id("staff id", staff_id)
    return Account(
        handset_username(tenant, staff_id),
        (
            Grant(Access.READ, contract.page_topic(tenant, staff_id)),
            Grant(Access.WRITE, replies_topic(tenant, staff_id)),
            Grant(Access.READ, contract.reply_outcome_topic(tenant, staff_id)),
        ),
    )


def integrator_account(tenant: str) -> Account:
    """A tenant-scoped integration: that tenant's alarm states and device statuses."""
    _id("tenant", tenant)
    return Account(
        integrator_username(tenant),
        (
            Grant(Access.READ, f"{contract.PREFIX}/{tenant}/alarms/#"),
            Grant(Access.READ, contract.status_topic(tenant, "+")),
        ),
    )


def directory_accounts(directory: Directory, simulator: bool = False) -> list[Account]:
    """Every account the directory implies: the centre's, the simulator's (if asked), one
    per device, one per staff member's handset and one integrator per tenant."""
    tenants = sorted(set(directory.tenants) | {s.tenant for s in directory.staff.values()})
    accounts = centre_accounts()
    if simulator:
        accounts.append(simulator_account(directory.tenants))
    accounts += [device_account(d.tenant, d.device_id) for d in directory.device_list]
    accounts += [handset_account(s.tenant, s.staff_id) for s in directory.staff.values()]
    accounts += [integrator_account(t) for t in tenants]
    return accounts


# -- the files ---------------------------------------------------------------------------


def hash_password(password: str, salt: bytes | None = None, iterations: int = HASH_ITERATIONS) -> str:
    """mosquitto 2.0's `$7$` format: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte hash."""
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_accounts(accounts: Sequence[Account]) -> None:
    """Refuse what would break or widen the files: a duplicate name, a name or topic with
    whitespace, a colon or a control character."""
    seen: set[str] = set()
    for account in accounts:
        if not _USERNAME.fullmatch(account.username):
            raise ValueError(f"account name {account.username!r}: use A-Z a-z 0-9 . _ / - only")
        if account.username in seen:
            raise ValueError(f"account {account.username!r} is defined twice")
        seen.add(account.username)
        for grant in account.grants:
            if not _TOPIC.fullmatch(grant.topic):
                raise ValueError(f"account {account.username!r}: topic {grant.topic!r} is empty or has whitespace")


def acl_text(accounts: Sequence[Account]) -> str:
    blocks = ["# Generated by `responsecentre broker config` from the directory: regenerate, do not edit.\n"]
    for account in accounts:
        lines = [f"user {account.username}", *(f"topic {g.access} {g.topic}" for g in account.grants)]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def password_text(credentials: Mapping[str, str]) -> str:
    return "".join(f"{name}:{hash_password(password)}\n" for name, password in credentials.items())


def load_credentials(path: Path) -> dict[str, str]:
    """username -> password from a credentials.json; empty when there is none yet."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{path}: expected a JSON object of username -> password")
    return dict(data)


def assign_passwords(accounts: Sequence[Account], known: Mapping[str, str]) -> dict[str, str]:
    """Keep the passwords of accounts that exist already (provisioned devices must go on
    logging in), a new random one for each new account; accounts not listed are dropped."""
    return {a.username: known.get(a.username) or secrets.token_urlsafe(PASSWORD_BYTES) for a in accounts}


def _write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    """Atomically (a SIGHUP mid-write must not make mosquitto read half a file), with the
    mode set before any secret is in the file, and with the owner of the file it replaces:
    regenerated as root for a broker that runs as `mosquitto`, a root-owned 0600 password
    file would be unreadable on reload, and mosquitto would then let nobody in."""
    try:
        owner: tuple[int, int] | None = (path.stat().st_uid, path.stat().st_gid)
    except FileNotFoundError:
        owner = None
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)  # the umask may have narrowed it
    if owner is not None and owner != (os.geteuid(), os.getegid()):
        with contextlib.suppress(PermissionError):  # only root may give a file away
            os.chown(tmp, *owner)
    tmp.replace(path)


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """Where everything lives in a broker directory (`--out`)."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "mosquitto.conf"

    @property
    def passwd(self) -> Path:
        return self.root / "passwd"

    @property
    def acl(self) -> Path:
        return self.root / "acl"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials.json"

    @property
    def pid(self) -> Path:
        return self.root / "mosquitto.pid"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    files: BrokerFiles
    credentials: Mapping[str, str]
    host: str
    port: int
    tls_port: int | None


def conf_text(
    files: BrokerFiles, host: str, port: int, tls_port: int | None = None, extra_lines: Sequence[str] = ()
) -> str:
    lines = [
        "# Generated by `responsecentre broker config`: regenerate, do not edit.",
        "allow_anonymous false",
        f"password_file {files.passwd}",
        f"acl_file {files.acl}",
        f"pid_file {files.pid}",
        "persistence true",
        f"persistence_location {files.root}/",
        "autosave_interval 1",
        # Room for a service that acks late (after its Redis write): inflight messages
        # beyond this are queued by the broker, not dropped.
        "max_inflight_messages 1000",
        "max_queued_messages 1000000",
        "max_packet_size 2097152",
        # Alarms are small messages that must not wait for Nagle's algorithm (with delayed
        # ACKs it adds ~40 ms to event -> alarm).
        "set_tcp_nodelay true",
        "log_type error",
        "log_type warning",
        "log_type notice",
        *extra_lines,
        f"listener {port} {host}",
        # The client id is the username: a client that names the centre's client id gets a
        # session of its own account instead of taking over (and acking) the centre's.
        # mosquitto reads this option per listener, so every listener says it.
        "use_username_as_clientid true",
    ]
    if tls_port is not None:
        lines += [
            f"listener {tls_port} {host}",
            "use_username_as_clientid true",
            f"cafile {files.ca_cert}",
            f"certfile {files.server_cert}",
            f"keyfile {files.server_key}",
        ]
    return "\n".join(lines) + "\n"


def write_config(
    out: Path,
    accounts: Sequence[Account],
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    tls_port: int | None = None,
    extra_lines: Sequence[str] = (),
) -> BrokerConfig:
    """Write (or rewrite) every file of a broker directory; returns the credentials."""
    check_accounts(accounts)
    out.mkdir(parents=True, exist_ok=True)
    files = BrokerFiles(out.resolve())
    credentials = assign_passwords(accounts, load_credentials(files.credentials))
    # The plaintext first: if anything below fails, no hash is live without its password.
    _write(files.credentials, json.dumps(credentials, indent=2) + "\n", 0o600)
    _write(files.passwd, password_text(credentials), 0o600)
    _write(files.acl, acl_text(accounts), 0o600)
    if tls_port is not None:
        ensure_tls(files, host)
    _write(files.conf, conf_text(files, host, port, tls_port, extra_lines))
    return BrokerConfig(files, credentials, host, port, tls_port)


# -- TLS -----------------------------------------------------------------------------------


def _names(host: str) -> list[str]:
    """The server certificate's names: loopback in every form, plus `host` unless it is a
    bind-everything address (which no client connects to by that name)."""
    names = list(LOCAL_NAMES)
    if host not in names and host not in ("0.0.0.0", "::", ""):
        names.append(host)
    return names


def ensure_tls(files: BrokerFiles, host: str = "127.0.0.1") -> None:
    """A CA and a server certificate signed by it; both are kept once made (devices carry
    the CA). The server certificate is made again only when it lacks a name now asked for."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def new_key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    now = dt.datetime.now(dt.UTC)
    ca_key: ec.EllipticCurvePrivateKey | None = None
    if files.ca_cert.exists():  # kept for good: devices trust it
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        if files.ca_key.exists():  # it may live elsewhere; only a new server certificate needs it
            loaded = serialization.load_pem_private_key(files.ca_key.read_bytes(), None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{files.ca_key}: not the EC key this module makes")
            ca_key = loaded
    else:
        ca_key = new_key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "responsecentre broker CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )  # key_cert_sign, crl_sign
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(files.ca_key, key_bytes(ca_key), 0o600)
        _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
        files.server_cert.unlink(missing_ok=True)  # signed by an older CA, if any

    wanted = _names(host)
    sans: list[x509.GeneralName] = []
    for name in wanted:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    if files.server_cert.exists() and files.server_key.exists():
        with contextlib.suppress(ValueError, x509.ExtensionNotFound):
            cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
            have = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
            if set(sans) <= have and cert.issuer == ca_cert.subject and cert.not_valid_after_utc > now:
                return
    if ca_key is None:
        raise ValueError(f"{files.server_cert} must be issued again (new name or expired) but {files.ca_key} is absent")
    key = new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, wanted[-1])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(files.server_key, key_bytes(key), 0o600)
    _write(files.server_cert, cert.public_bytes(serialization.Encoding.PEM))


# -- reloading -------------------------------------------------------------------------------


class BrokerNotRunning(RuntimeError):
    """No mosquitto runs on this broker directory's pid file."""


def signal_reload(files: BrokerFiles) -> int:
    """SIGHUP to the mosquitto of `files` (its pid file): it reloads the password and ACL
    files, disconnects clients whose account is gone, and applies the new ACLs. Returns the
    pid. A stale pid file (mosquitto gone, its pid reused) is refused rather than signalled."""
    try:
        pid = int(files.pid.read_text().strip())
    except (FileNotFoundError, ValueError):
        raise BrokerNotRunning(f"no mosquitto pid in {files.pid}: is mosquitto running with {files.conf}?") from None
    gone = BrokerNotRunning(f"mosquitto (pid {pid} of {files.pid}) is not running")
    if Path("/proc/self").exists():  # Linux: make sure the pid is still mosquitto's
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except FileNotFoundError:
            raise gone from None
        if name != "mosquitto":
            raise BrokerNotRunning(f"pid {pid} of {files.pid} is {name}, not mosquitto (a stale pid file?)")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise gone from None
    return pid
