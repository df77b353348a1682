"""Incident grouping, pure: thresholds per kind, late joiners, the window, quiet periods,
closing, replay determinism. Times are plain ints (ms)."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from responsecentre.escalation import incidents as inc
from responsecentre.escalation.incidents import (
    Closed,
    CloseReason,
    GroupState,
    IncidentConfig,
    IncidentConfigError,
    IncidentRule,
    Join,
    Open,
    Standalone,
    close,
    close_member,
    decide,
    expire,
    parse_incident_config,
    quiet_due_ms,
)

MIN = 60_000
CONFIG = IncidentConfig(
    {
        "device_offline": IncidentRule("device_offline", 3, 5 * MIN, 5 * MIN),
        "broker_down": IncidentRule("broker_down", 2, MIN, 10 * MIN),
    }
)


def feed(
    events: list[tuple[str, int]], kind: str = "device_offline", tenant: str = "vestby", state: GroupState | None = None
) -> tuple[GroupState | None, list[object]]:
    decisions: list[object] = []
    for alarm_id, now in events:
        state, decision = decide(state, alarm_id, kind, tenant, now, CONFIG)
        decisions.append(decision)
    return state, decisions


def test_below_the_threshold_every_alarm_stands_alone() -> None:
    state, decisions = feed([("a1", 0), ("a2", MIN)])
    assert decisions == [Standalone(1), Standalone(2)]
    assert state is not None and state.incident is None and [a for _, a in state.recent] == ["a1", "a2"]


def test_the_nth_within_the_window_opens_an_incident_with_the_earlier_ones() -> None:
    state, decisions = feed([("a1", 0), ("a2", MIN), ("a3", 5 * MIN)])  # 5 min: within, inclusive
    assert decisions[2] == Open("vestby:device_offline:a1", ("a1", "a2", "a3"), 5 * MIN)
    assert state is not None and state.recent == ()
    assert state.incident is not None and state.incident.open == ("a1", "a2", "a3")


def test_later_alarms_join_the_open_incident() -> None:
    # a4 at 1 min, a5 at 6 min - 1 ms: each within the quiet period (5 min) of the last join.
    state, decisions = feed([("a1", 0), ("a2", 0), ("a3", 0), ("a4", MIN), ("a5", 6 * MIN - 1)])
    assert decisions[3:] == [Join("vestby:device_offline:a1"), Join("vestby:device_offline:a1")]
    assert state is not None and state.incident is not None
    assert state.incident.members == ("a1", "a2", "a3", "a4", "a5")
    assert state.incident.last_join_ms == 6 * MIN - 1


def test_alarms_outside_the_window_do_not_count() -> None:
    state, decisions = feed([("a1", 0), ("a2", MIN), ("a3", 5 * MIN + 1)])  # a1 is 5 min + 1 ms old
    assert decisions == [Standalone(1), Standalone(2), Standalone(2)]
    _, more = feed([("a4", 6 * MIN)], state=state)
    assert more == [Open("vestby:device_offline:a2", ("a2", "a3", "a4"), 6 * MIN)]


def test_thresholds_are_per_kind_and_unknown_kinds_never_group() -> None:
    _, broker = feed([("b1", 0), ("b2", 30_000)], kind="broker_down")
    assert broker == [Standalone(1), Open("vestby:broker_down:b1", ("b1", "b2"), 30_000)]
    state, falls = feed([(f"f{i}", 0) for i in range(50)], kind="fall")
    assert falls == [Standalone()] * 50
    assert state is not None and state.empty


def test_tenants_are_separate() -> None:
    vestby, _ = feed([("a1", 0), ("a2", 0)], tenant="vestby")
    _, oslo = feed([("o1", 0)], tenant="oslo")
    assert oslo == [Standalone(1)]
    _, more = feed([("a3", MIN)], tenant="vestby", state=vestby)
    assert more == [Open("vestby:device_offline:a1", ("a1", "a2", "a3"), MIN)]


def test_the_quiet_period_ends_the_incident_and_counting_starts_again() -> None:
    state, _ = feed([("a1", 0), ("a2", 0), ("a3", 0), ("a4", 2 * MIN)])
    assert state is not None and quiet_due_ms(state, CONFIG) == 7 * MIN
    same, closed = expire(state, CONFIG, 7 * MIN - 1)
    assert closed is None and same.incident is not None
    ended, closed = expire(state, CONFIG, 7 * MIN)
    assert closed == Closed("vestby:device_offline:a1", CloseReason.QUIET, 7 * MIN)
    assert ended.incident is None
    # The next alarm of the kind counts from one (decide() expires on its own, too).
    state, decisions = feed([("a5", 8 * MIN), ("a6", 8 * MIN), ("a7", 9 * MIN)], state=state)
    assert decisions == [Standalone(1), Standalone(2), Open("vestby:device_offline:a5", ("a5", "a6", "a7"), 9 * MIN)]


def test_the_incident_closes_with_its_last_member() -> None:
    state, _ = feed([("a1", 0), ("a2", 0), ("a3", 0)])
    assert state is not None
    for alarm in ("a2", "a1"):
        state, closed = close_member(state, alarm, MIN)
        assert closed is None
    assert state.incident is not None and state.incident.open == ("a3",)
    state, closed = close_member(state, "a3", 2 * MIN)
    assert closed == Closed("vestby:device_offline:a1", CloseReason.MEMBERS_CLOSED, 2 * MIN)
    assert state.empty
    state, closed = close_member(state, "a3", 3 * MIN)  # again: nothing
    assert closed is None


def test_a_closed_alarm_no_longer_counts_towards_the_threshold() -> None:
    state, _ = feed([("a1", 0), ("a2", 0)])
    assert state is not None
    state, closed = close_member(state, "a1", MIN)
    assert closed is None
    _, decisions = feed([("a3", MIN)], state=state)
    assert decisions == [Standalone(2)]


def test_close_as_a_whole_and_a_stale_id_changes_nothing() -> None:
    state, _ = feed([("a1", 0), ("a2", 0), ("a3", 0)])
    assert state is not None
    same, closed = close(state, "vestby:device_offline:zz", MIN)
    assert closed is None and same == state
    state, closed = close(state, "vestby:device_offline:a1", MIN)
    assert closed == Closed("vestby:device_offline:a1", CloseReason.CLOSED, MIN)
    assert state.incident is None


def test_a_repeated_decide_for_the_same_alarm_changes_nothing() -> None:
    state, _ = feed([("a1", 0)])
    again, decisions = feed([("a1", 10)], state=state)
    assert decisions == [Standalone(1)] and again == state
    state, _ = feed([("a1", 0), ("a2", 0), ("a3", 0), ("a4", 0)])
    again, decisions = feed([("a2", 10), ("a4", 10)], state=state)
    assert decisions == [Join("vestby:device_offline:a1")] * 2
    assert again is not None and state is not None and again.incident == state.incident


def test_listed_members_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inc, "MAX_MEMBERS", 4)
    state, decisions = feed([(f"a{i}", 0) for i in range(6)])
    assert decisions[-1] == Join("vestby:device_offline:a0")
    assert state is not None and state.incident is not None
    assert state.incident.members == ("a0", "a1", "a2", "a3") and state.incident.unlisted == 2
    for alarm in state.incident.members:  # the unlisted ones keep it open until the quiet period
        state, closed = close_member(state, alarm, MIN)
        assert closed is None
    _, closed = expire(state, CONFIG, 5 * MIN)
    assert closed is not None and closed.reason is CloseReason.QUIET


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["raise", "raise", "raise", "close"]),
        st.integers(0, 12),  # alarm number
        st.integers(0, 3 * MIN),  # time step
        st.sampled_from(["device_offline", "broker_down"]),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(EVENTS)
def test_replay_yields_the_same_decisions_and_ids_and_state_stays_bounded(
    events: list[tuple[str, int, int, str]],
) -> None:
    def run() -> list[object]:
        states: dict[str, GroupState | None] = {}
        out: list[object] = []
        now = 0
        for action, number, step, kind in events:
            now += step
            alarm = f"{kind}-{number}"
            state = states.get(kind)
            if action == "raise":
                state, decision = decide(state, alarm, kind, "vestby", now, CONFIG)
                out.append(decision)
            elif state is not None:
                state, closed = close_member(state, alarm, now)
                out.append(closed)
            if state is not None:
                rule = CONFIG.rule(kind)
                assert rule is not None
                assert len(state.recent) < rule.min_alarms
                assert all(now - t <= rule.within_ms for t, _ in state.recent) or action == "close"
                if state.incident is not None:
                    assert set(state.incident.open) <= set(state.incident.members)
                    assert state.incident.id.startswith(f"vestby:{kind}:")
            states[kind] = state
        return out

    assert run() == run()


def test_parse_incident_config_from_chains_yaml() -> None:
    doc = yaml.safe_load(
        """
chains: {}
incidents:
  device_offline: {min_alarms: 20, within: 5m}
  broker_unreachable: {min_alarms: 3, within: 60s, quiet: 10m}
"""
    )
    config = parse_incident_config(doc)
    assert config.rule("device_offline") == IncidentRule("device_offline", 20, 5 * MIN, 5 * MIN)
    assert config.rule("broker_unreachable") == IncidentRule("broker_unreachable", 3, MIN, 10 * MIN)
    assert parse_incident_config({"chains": {}}) == IncidentConfig()
    assert parse_incident_config(None) == IncidentConfig()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"x": {"min_alarms": 1, "within": "5m"}}, "incidents.x: min_alarms must be a whole number from 2"),
        ({"x": {"min_alarms": True, "within": "5m"}}, "min_alarms must be a whole number"),
        ({"x": {"min_alarms": 5}}, "incidents.x is missing 'within'"),
        ({"x": {"min_alarms": 5, "within": "soon"}}, "soon"),
        ({"x": {"min_alarms": 5, "within": "5m", "quite": "1m"}}, "unknown key 'quite'"),
        ({"x": 5}, "incidents.x must be a mapping"),
        ([1, 2], "incidents must be a mapping"),
    ],
)
def test_bad_incident_config_is_refused(section: object, message: str) -> None:
    with pytest.raises(IncidentConfigError, match=None) as caught:
        parse_incident_config({"incidents": section})
    assert message in str(caught.value)
