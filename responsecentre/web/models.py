"""The shapes the HTTP API promises, request and response.

They exist so /openapi.json tells the truth: every status a route can answer is listed
with its body, and schemathesis (tests/test_http_contract.py) holds the routes to it.
Responses are validated against these models on the way out, so a drift between the
alarm view and the document fails loudly in the tests rather than in an integration.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from responsecentre.alarms.model import CLOSING_CODES, AlarmState
from responsecentre.web.auth import Role

MAX_TEXT = 2000


# An enum so the document lists the codes and a wrong one is a 422 naming the valid ones.
ClosingCode = StrEnum("ClosingCode", {code: code for code in CLOSING_CODES})  # type: ignore[misc]


class AckBody(BaseModel):
    note: str = Field(default="", max_length=MAX_TEXT)


class ResolveBody(BaseModel):
    code: ClosingCode = Field(description="one of GET /api/closing-codes")  # type: ignore[valid-type]
    note: str = Field(default="", max_length=MAX_TEXT)


class PageAnswerBody(BaseModel):
    page_id: str | None = Field(
        default=None, max_length=200, description="the page answered (from the page body); default: your latest"
    )


class DispatchBody(BaseModel):
    staff_id: str = Field(min_length=1, max_length=100, description="someone on duty in the alarm's zone now")


class NoteBody(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT)


# -- responses -------------------------------------------------------------------------------


class Problem(BaseModel):
    """Every error that is not a validation error: one sentence a person can act on."""

    detail: str


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """A 422: where and why, never the rejected input (it may be huge or personal)."""

    detail: list[FieldProblem]


class DispatchView(BaseModel):
    staff_id: str
    status: str = Field(description="paged | accepted | declined | released")


class AlarmView(BaseModel):
    id: str
    tenant: str
    home_id: str
    zone: str
    kind: str
    priority: str
    rule: str
    state: AlarmState
    unhandled: bool
    chain: str
    step: int
    steps: int
    round: int
    next_step_due: str | None
    raised_at: str
    updated_at: str
    acknowledged_at: str | None
    acknowledged_by: str | None
    accepted_by: str | None = Field(default=None, description="staff id of the nurse who accepted")
    en_route_at: str | None = None
    on_site_at: str | None = None
    closed_at: str | None
    closed_by: str | None
    closing_code: str | None
    triggers: int
    paused: bool = Field(default=False, description="the chain waits: a dispatched person has the alarm")
    turn: int = Field(default=1, description="the person's place in a round-robin step (1-based)")
    dispatches: list[DispatchView] = []
    incident_id: str | None = Field(default=None, description="the incident this alarm is a member of")
    incident_lead: bool = Field(default=False, description="its chain is the incident's one escalation")


class Dispatchable(BaseModel):
    staff_id: str
    name: str
    role: str


class DispatchableList(BaseModel):
    zone: str
    staff: list[Dispatchable]


class IncidentView(BaseModel):
    id: str
    tenant: str
    kind: str
    opened_at: str | None
    last_join_at: str | None
    members: list[str] = Field(description="alarm ids in the order they joined")
    open: list[str] = Field(description="the members not yet closed")
    lead: str | None = Field(description="the member whose chain is the incident's one escalation")
    unlisted: int = Field(description="members beyond the listed ones: counted, not listed")


class IncidentList(BaseModel):
    incidents: list[IncidentView]


class IncidentResolved(BaseModel):
    resolved: list[str]


class EntryView(BaseModel):
    ts: str | None
    what: str
    by: str
    detail: dict[str, Any]


class AlarmDetail(AlarmView):
    timeline: list[EntryView]


class AlarmList(BaseModel):
    alarms: list[AlarmView]


class ClosingCodeView(BaseModel):
    code: str
    label: str


class ClosingCodes(BaseModel):
    codes: list[ClosingCodeView]


class DeviceView(BaseModel):
    tenant: str
    device_id: str
    kind: str
    home_id: str
    online: bool | None
    battery: int | float | None
    status_at: str | None


class DeviceList(BaseModel):
    devices: list[DeviceView]


class EventView(BaseModel):
    position: str = Field(description="the entry's id in the tenant's event log")
    device_id: str
    event_id: str
    type: str
    ts: str | None = Field(description="the device's own time")
    received_at: str | None
    value: float | None
    data: dict[str, Any] | None


class EventList(BaseModel):
    events: list[EventView]


class DeadLetterView(BaseModel):
    position: str
    topic: str
    reason: str = Field(description="a machine-readable reason, e.g. bad_json, unknown_device, bad_topic")
    detail: str
    size: int = Field(description="bytes of the refused payload")
    sample: str = Field(description="its first bytes as text (invalid UTF-8 replaced)")
    received_at: str | None


class DeadLetterList(BaseModel):
    dead_letters: list[DeadLetterView]


class ResidentView(BaseModel):
    name: str
    address: str
    key_safe: str
    care_notes: str


class HomeView(BaseModel):
    tenant: str
    home_id: str
    zone: str
    devices: list[str]
    resident: ResidentView


class Me(BaseModel):
    username: str
    role: Role
    staff_id: str | None


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description='per dependency: "ok" or why it is not ready')
    problems: list[str] = Field(description='"name: why" for each failing dependency (kept for older probes)')


def problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


UNAUTHENTICATED = {
    401: problem("No or wrong credentials (an API token, HTTP Basic, or the console's session cookie)"),
    429: problem(
        "Too many failed sign-ins for this user or from this address, or the account is locked: "
        "nothing was checked; retry after Retry-After seconds (an admin can unlock an account)"
    ),
}
FORBIDDEN = {403: problem("The role may not do this, or a session's CSRF token is missing")}
INVALID = {422: {"model": ValidationProblem, "description": "The request does not match this document"}}
UNAVAILABLE = {
    503: problem(
        "Alarm storage (Redis) is unavailable, or too many password checks are in progress; "
        "retry after Retry-After seconds"
    )
}
PROTECTED: dict[int | str, dict[str, Any]] = {**UNAUTHENTICATED, **FORBIDDEN, **INVALID, **UNAVAILABLE}
# For routes that take a body: what is refused before the body is looked at.
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: problem("The body is not UTF-8"),
    413: problem("The request body is larger than 64 KiB"),
}


# -- users, passwords and API tokens (web/users.py, web/session.py) ------------------------------

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# Length is what makes a password strong (auth.password_problem says the rest).
NewPassword = Annotated[
    str, Field(min_length=12, max_length=1024, description="at least 12 characters, and not the username")
]
TenantName = Annotated[str, Field(min_length=1, max_length=64)]


class UserCreate(BaseModel):
    username: str = Field(pattern=USERNAME_PATTERN)
    password: NewPassword
    role: Role
    staff_id: str | None = Field(default=None, pattern=NAME_PATTERN)
    tenants: list[TenantName] = Field(
        max_length=100, description="municipalities the user may see; each must be one of yours"
    )


class UserView(BaseModel):
    username: str
    role: Role
    staff_id: str | None
    tenants: list[str]
    locked_until: str | None = Field(description="set while the account is locked after failed sign-ins")


class UserList(BaseModel):
    users: list[UserView]


class PasswordSet(BaseModel):
    password: NewPassword


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: NewPassword


class PasswordChanged(BaseModel):
    sessions_ended: int = Field(description="sessions of the user that were ended")


class TokenCreate(BaseModel):
    label: str = Field(default="", max_length=200, description="what the token is for, e.g. the integration")


class TokenView(BaseModel):
    id: str
    username: str
    label: str
    created_at: str | None
    last_used_at: str | None = Field(description="to the minute")


class TokenCreated(TokenView):
    token: str = Field(description="send as `Authorization: Bearer <token>`; shown only this once")


class TokenList(BaseModel):
    tokens: list[TokenView]


# -- suppression: silences, home status, device maintenance (web/silences.py) --------------------

TARGET_PATTERN = r"^[A-Za-z0-9._-]{0,64}$"


class SilenceCreate(BaseModel):
    tenant: TenantName
    scope: Literal["tenant", "home", "device", "kind"] = Field(description="what the silence holds back")
    target: str = Field(
        default="",
        pattern=TARGET_PATTERN,
        description="the home id, device id or alarm kind; empty for a tenant-wide silence",
    )
    start: AwareDatetime | None = Field(default=None, description="default and at the earliest: now")
    end: AwareDatetime = Field(description="after the start, at most 90 days after it")
    reason: str = Field(min_length=1, max_length=500, description="why, for the operator who finds it later")


class SilenceView(BaseModel):
    id: str
    tenant: str
    scope: Literal["tenant", "home", "device", "kind"]
    target: str
    start: str
    end: str
    reason: str
    created_by: str
    source: Literal["api", "yaml"] = Field(description="yaml: set in devices/homes.yaml, ended only there")
    active: bool = Field(description="in force now (otherwise planned, or ended)")


class HomeStatusBody(BaseModel):
    status: Literal["normal", "away", "in_hospital"]
    until: AwareDatetime | None = Field(default=None, description="when it ends by itself (not for normal)")


class HomeStatusView(BaseModel):
    tenant: str
    home_id: str
    status: Literal["normal", "away", "in_hospital"] = Field(description="the status now")
    since: str | None
    until: str | None
    set_by: str
    source: Literal["api", "yaml", "none"]


class MaintenanceBody(BaseModel):
    maintenance: bool
    until: AwareDatetime | None = Field(default=None, description="when it ends by itself (only with true)")


class MaintenanceView(BaseModel):
    tenant: str
    device_id: str
    home_id: str
    maintenance: bool = Field(description="in maintenance now")
    since: str | None
    until: str | None
    set_by: str
    source: Literal["api", "yaml", "none"]


class SuppressionList(BaseModel):
    silences: list[SilenceView] = Field(description="in force or planned, by start")
    homes: list[HomeStatusView] = Field(description="homes away or in hospital now")
    devices: list[MaintenanceView] = Field(description="devices in maintenance now")
