"""What the planner needs to know about the people around one alarm at `now`, read from
the directory (rosters, staff, the home's relatives).

The pure planner (`escalation.planner`) decides who gets which delivery; it is handed this
`StepContext` and reads nothing itself. Only the roles the alarm's chain names are looked
up on the roster, so a chain that pages nurses does not pay for the technicians' shifts.
"""

from __future__ import annotations

from responsecentre.directory import Directory
from responsecentre.escalation.chains import Chain, TargetKind
from responsecentre.escalation.people import StaffMember, StaffRole
from responsecentre.escalation.planner import AlarmRef, StepContext

_ROLES = {str(r): r for r in StaffRole}


def chain_roles(chain: Chain) -> list[StaffRole]:
    """The staff roles a chain's targets name, once each."""
    roles: dict[StaffRole, None] = {}
    for step in chain.steps:
        for target in step.targets:
            if target.kind == TargetKind.ROLE and target.value in _ROLES:
                roles[_ROLES[target.value]] = None
    return list(roles)


def staff_of(directory: Directory, tenant: str) -> dict[str, StaffMember]:
    return {staff_id: m for (t, staff_id), m in directory.staff.items() if t == tenant}


def step_context(directory: Directory, ref: AlarmRef, chain: Chain, now_ms: int) -> StepContext:
    on_duty: dict[StaffRole, tuple[StaffMember, ...]] = {}
    minimums: dict[StaffRole, int] = {}
    for role in chain_roles(chain):
        on_duty[role] = directory.on_duty(ref.tenant, str(role), ref.zone, now_ms)
        minimums[role] = directory.coverage(ref.tenant, str(role), ref.zone, now_ms).minimum
    home = directory.home(ref.tenant, ref.home_id)
    return StepContext(
        on_duty=on_duty,
        staff=staff_of(directory, ref.tenant),
        relatives=home.relatives if home is not None else (),
        minimums=minimums,
    )


def on_duty_in_zone(directory: Directory, tenant: str, zone: str, now_ms: int) -> list[tuple[StaffMember, StaffRole]]:
    """Everyone on duty for a home in `zone` now, in each role's roster order: whom an
    operator may dispatch. A person on duty in two roles is listed once, under the first."""
    seen: set[str] = set()
    out: list[tuple[StaffMember, StaffRole]] = []
    for role in StaffRole:
        if role == StaffRole.OPERATOR:
            continue  # operators are at the console, not sent out
        for member in directory.on_duty(tenant, str(role), zone, now_ms):
            if member.staff_id not in seen:
                seen.add(member.staff_id)
                out.append((member, role))
    return out
