"""The people an escalation reaches, as frozen values: staff on the roster and the
resident's relatives. The roster (`escalation.roster`) says who is on duty; the planner
(`escalation.planner`) turns them into deliveries over their contacts, in order."""

from __future__ import annotations

from enum import StrEnum

import msgspec

from responsecentre.escalation.delivery import Contact


class StaffRole(StrEnum):
    NURSE = "nurse"
    TEAM_LEAD = "team_lead"
    TECHNICIAN = "technician"
    OPERATOR = "operator"


ALL_ZONES = "all"  # a person or shift that covers every zone of the tenant


class StaffMember(msgspec.Struct, frozen=True):
    """A person on the roster. `contacts` is their own order of channels: the first is
    tried first, the next when the first is not receipted in time."""

    tenant: str
    staff_id: str
    name: str
    roles: tuple[StaffRole, ...]
    zones: tuple[str, ...]  # zone names, or (ALL_ZONES,)
    contacts: tuple[Contact, ...] = ()

    def covers(self, zone: str) -> bool:
        return ALL_ZONES in self.zones or zone in self.zones


class Relative(msgspec.Struct, frozen=True):
    """One of the resident's relatives from the home's record (health-adjacent data: the
    name never goes into a page or a log, only the contact's address into its channel)."""

    name: str
    contacts: tuple[Contact, ...] = ()
