"""The chain runner, pure: tables of (events, times) -> expected position, no sleeping.

The first half is the original API (no people frozen); the second covers round robin,
declines, repeat from a step, the priority jump and dispatch."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responsecentre.escalation.chains import (
    Chain,
    Channel,
    NotifyMode,
    Step,
    Target,
    TargetKind,
    parse_book,
    parse_chains,
)
from responsecentre.escalation.runner import (
    Action,
    Decline,
    Dispatch,
    DispatchAccepted,
    DispatchDeclined,
    DispatchReleased,
    DispatchStatus,
    Escalation,
    Exhausted,
    Notify,
    NotifyDispatch,
    NotLive,
    Paused,
    People,
    Rechain,
    Rechained,
    Resumed,
    Schedule,
    Skipped,
    Stop,
    Timeout,
    Turn,
    Unschedule,
    advance,
    is_live,
    start,
    why_not_live,
)

CONSOLE = Target(TargetKind.CONSOLE)


def chain(*ack_s: int, repeat: int = 0) -> Chain:
    return Chain("c", tuple(Step((CONSOLE,), (Channel.CONSOLE,), s * 1000) for s in ack_s), repeat)


def test_start_notifies_step_one_and_schedules_its_timeout() -> None:
    state, actions = start(chain(60, 120), 1_000)
    assert (state.step, state.round, state.due_ms) == (0, 0, 61_000)
    assert actions == [Notify(0, 0), Schedule(61_000, 0, 0)]


def test_timeout_moves_to_the_next_step_with_its_own_ack_within() -> None:
    state, _ = start(chain(60, 120), 0)
    state, actions = advance(state, Timeout(0, 0), 60_000)
    assert (state.step, state.due_ms) == (1, 180_000)
    assert actions == [Notify(1, 0), Schedule(180_000, 1, 0)]


@pytest.mark.parametrize(
    ("event", "now"),
    [
        (Timeout(0, 0), 59_999),  # early
        (Timeout(1, 0), 60_000),  # a step not running
        (Timeout(0, 1), 60_000),  # a round not running
    ],
)
def test_stale_early_or_foreign_timers_are_fenced_off(event: Timeout, now: int) -> None:
    state, _ = start(chain(60, 120), 0)
    assert advance(state, event, now) == (state, [])


def test_a_duplicate_timer_firing_does_not_skip_a_step() -> None:
    state, _ = start(chain(60, 120, 180), 0)
    state, _ = advance(state, Timeout(0, 0), 60_000)
    again, actions = advance(state, Timeout(0, 0), 60_001)
    assert (again, actions) == (state, [])


def test_repeat_starts_over_then_exhausts() -> None:
    state, _ = start(chain(10, 10, repeat=1), 0)
    state, _ = advance(state, Timeout(0, 0), 10_000)
    state, actions = advance(state, Timeout(1, 0), 20_000)
    assert (state.step, state.round) == (0, 1)
    assert actions[0] == Notify(0, 1)
    state, _ = advance(state, Timeout(0, 1), 30_000)
    state, actions = advance(state, Timeout(1, 1), 40_000)
    assert state.exhausted and actions == [Exhausted()]
    assert advance(state, Timeout(1, 1), 50_000) == (state, [])


def test_stop_unschedules_the_running_step_once() -> None:
    state, _ = start(chain(60, 120), 0)
    state, _ = advance(state, Timeout(0, 0), 60_000)
    stopped, actions = advance(state, Stop("acknowledged"), 70_000)
    assert stopped.stopped and actions == [Unschedule(1, 0)]
    assert advance(stopped, Stop("resolved"), 80_000) == (stopped, [])
    assert advance(stopped, Timeout(1, 0), 180_000) == (stopped, [])


@settings(max_examples=200, deadline=None)
@given(
    acks=st.lists(st.integers(1, 300), min_size=1, max_size=5),
    repeat=st.integers(0, 3),
    fires=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 4), st.integers(0, 2000)), max_size=40),
)
def test_every_step_is_entered_once_in_order_whatever_timers_fire(
    acks: list[int], repeat: int, fires: list[tuple[int, int, int]]
) -> None:
    """Random (possibly stale, duplicate or early) timer firings interleaved with the
    genuine ones: the steps entered are exactly 0..n-1 per round, in order."""
    c = chain(*acks, repeat=repeat)
    state, actions = start(c, 0)
    entered = [(a.round, a.step) for a in actions if isinstance(a, Notify)]
    now = 0
    for step, round_, jitter in fires:
        now += jitter
        state, actions = advance(state, Timeout(step, round_), now)
        entered += [(a.round, a.step) for a in actions if isinstance(a, Notify)]
    for _ in range(len(acks) * (repeat + 1) + 1):  # then let the genuine timers run out
        if state.exhausted:
            break
        assert state.due_ms is not None
        now = max(now, state.due_ms)
        state, actions = advance(state, Timeout(state.step, state.round), now)
        entered += [(a.round, a.step) for a in actions if isinstance(a, Notify)]
    assert state.exhausted
    assert entered == [(r, s) for r in range(repeat + 1) for s in range(len(acks))]


def test_chains_yaml_parses_and_rejects_nonsense() -> None:
    chains = parse_chains(
        {"chains": {"x": {"steps": [{"targets": ["console", {"role": "nurse"}], "ack_within": "90s"}]}}}
    )
    assert chains["x"].steps[0].ack_within_ms == 90_000
    assert chains["x"].steps[0].targets[1] == Target(TargetKind.ROLE, "nurse")
    with pytest.raises(ValueError, match="ack_within"):
        parse_chains({"chains": {"x": {"steps": [{"targets": ["console"]}]}}})
    with pytest.raises(ValueError, match="unknown target"):
        parse_chains({"chains": {"x": {"steps": [{"targets": ["pager"], "ack_within": 5}]}}})


# -- round robin, declines, repeat from a step, the priority jump, dispatch -------------------

NURSE = Target(TargetKind.ROLE, "nurse")
LEAD = Target(TargetKind.ROLE, "team_lead")
HANDSET = (Channel.HANDSET,)


def rr(*targets: Target, ack_s: int = 60) -> Step:
    return Step(tuple(targets), HANDSET, ack_s * 1000, NotifyMode.ROUND_ROBIN)


def every(*targets: Target, ack_s: int = 60) -> Step:
    return Step(tuple(targets), HANDSET, ack_s * 1000)


def roster(**on_duty: list[str]) -> People:
    """A `people` callable: role -> staff ids in roster order; named staff as named."""

    def people(step: Step) -> tuple[Turn, ...]:
        out: dict[str, Turn] = {}
        for i, t in enumerate(step.targets):
            names = on_duty.get(t.value, []) if t.kind == TargetKind.ROLE else []
            names = [t.value] if t.kind == TargetKind.STAFF else names
            for name in names:
                out.setdefault(name, Turn(name, i))
        return tuple(out.values())

    return people


def test_without_people_nothing_is_frozen_and_the_old_actions_are_unchanged() -> None:
    state, actions = start(chain(60), 0)
    assert actions == [Notify(0, 0), Schedule(60_000, 0, 0)]
    assert actions[0].recipients is None and state.people == ()


def test_round_robin_pages_one_person_at_a_time_in_roster_order_each_with_their_own_ack_within() -> None:
    c = Chain("rr", (rr(Target(TargetKind.ROLE, "team_lead", 45_000), NURSE, ack_s=60), every(CONSOLE, ack_s=120)))
    people = roster(team_lead=["tl1"], nurse=["n1", "n2"])
    state, actions = start(c, 0, people)
    assert actions == [Notify(0, 0, 0, ("tl1",)), Schedule(45_000, 0, 0, 0)]
    assert state.recipient == "tl1"
    state, actions = advance(state, Timeout(0, 0, 0), 45_000, people)
    assert actions == [Notify(0, 0, 1, ("n1",)), Schedule(105_000, 0, 0, 1)]
    state, actions = advance(state, Timeout(0, 0, 1), 105_000, people)
    assert actions == [Notify(0, 0, 2, ("n2",)), Schedule(165_000, 0, 0, 2)]
    state, actions = advance(state, Timeout(0, 0, 2), 165_000, people)
    assert actions == [Notify(1, 0, 0, ()), Schedule(285_000, 1, 0, 0)]  # console only: nobody frozen
    assert state.recipient is None


def _second_turn() -> Escalation:
    people = roster(nurse=["n1", "n2", "n3"])
    state, _ = start(Chain("rr", (rr(NURSE), every(CONSOLE))), 0, people)
    state, _ = advance(state, Timeout(0, 0, 0), 60_000, people)
    assert (state.turn, state.due_ms) == (1, 120_000)
    return state


@pytest.mark.parametrize(
    ("event", "now"),
    [
        (Timeout(0, 0, 0), 200_000),  # the turn that has passed
        (Timeout(0, 0, 1), 119_999),  # early
        (Timeout(0, 0, 2), 200_000),  # a turn not yet running
        (Timeout(0, 0, 1, epoch=1), 200_000),  # another epoch
        (Timeout(0, 0), 200_000),  # an old-style timer (turn 0)
    ],
)
def test_round_robin_timers_are_fenced_by_turn(event: Timeout, now: int) -> None:
    state = _second_turn()
    assert advance(state, event, now) == (state, [])


def test_a_restart_mid_round_robin_pages_the_frozen_next_person_even_if_the_roster_changed() -> None:
    state = _second_turn()
    stored = msgspec.json.decode(msgspec.json.encode(state), type=Escalation)
    assert stored == state
    _, actions = advance(stored, Timeout(0, 0, 1), 120_000, roster(nurse=["n9"]))
    assert actions == [Notify(0, 0, 2, ("n3",)), Schedule(180_000, 0, 0, 2)]


def test_a_decline_in_a_round_robin_moves_to_the_next_person_then_the_next_step() -> None:
    c = Chain("rr", (rr(NURSE), every(LEAD)))
    people = roster(nurse=["n1", "n2"], team_lead=["tl1"])
    state, _ = start(c, 0, people)
    state, actions = advance(state, Decline("n1", 0, 0, 0), 5_000, people)
    assert actions == [Unschedule(0, 0, 0), Notify(0, 0, 1, ("n2",)), Schedule(65_000, 0, 0, 1)]
    state, actions = advance(state, Decline("n2", 0, 0, 1, epoch=0), 6_000, people)
    assert actions == [Unschedule(0, 0, 1), Notify(1, 0, 0, ("tl1",)), Schedule(66_000, 1, 0, 0)]


@pytest.mark.parametrize(
    ("decline", "reason"),
    [
        (Decline("n1", 0, 0, 0), NotLive.STALE),  # n1's turn has passed
        (Decline("n3", 0, 0, 1), NotLive.NOT_PAGED),  # it is n2's turn
        (Decline("n2", 0, 0, 1, epoch=1), NotLive.STALE),
        (Decline("n2", 1, 0, 0), NotLive.STALE),
    ],
)
def test_stale_or_foreign_declines_are_fenced_and_say_why(decline: Decline, reason: NotLive) -> None:
    people = roster(nurse=["n1", "n2", "n3"])
    state, _ = start(Chain("rr", (rr(NURSE), every(CONSOLE))), 0, people)
    state, _ = advance(state, Decline("n1", 0, 0, 0), 1_000, people)
    assert why_not_live(state, decline.staff_id, decline.step, decline.round, decline.turn, decline.epoch) == reason
    assert not is_live(state, decline.staff_id, decline.step, decline.round, decline.turn, decline.epoch)
    assert advance(state, decline, 2_000, people) == (state, [])
    assert is_live(state, "n2", 0, 0, 1)


def test_an_all_at_once_step_moves_on_when_everyone_paged_has_declined() -> None:
    c = Chain("all", (every(CONSOLE, NURSE), every(LEAD)))
    people = roster(nurse=["n1", "n2"], team_lead=["tl1"])
    state, actions = start(c, 0, people)
    assert actions[0] == Notify(0, 0, 0, ("n1", "n2"))
    state, actions = advance(state, Decline("n1", 0, 0), 1_000, people)
    assert actions == [] and state.declined == ("n1",) and state.step == 0 and state.due_ms == 60_000
    assert why_not_live(state, "n1", 0, 0) == NotLive.ANSWERED
    assert advance(state, Decline("n1", 0, 0), 1_500, people) == (state, [])
    state, actions = advance(state, Decline("n2", 0, 0), 2_000, people)
    assert actions == [Unschedule(0, 0), Notify(1, 0, 0, ("tl1",)), Schedule(62_000, 1, 0)]
    assert state.declined == ()


def test_without_frozen_people_the_shell_says_when_everyone_has_declined() -> None:
    state, _ = start(chain(60, 120), 0)
    state, actions = advance(state, Decline("n1", 0, 0), 1_000)
    assert actions == [] and state.declined == ("n1",)
    state, actions = advance(state, Decline("n2", 0, 0, everyone=True), 2_000)
    assert actions == [Unschedule(0, 0), Notify(1, 0), Schedule(122_000, 1, 0)]


def test_a_step_with_nobody_to_tell_is_skipped_at_once_unless_the_console_shows_it() -> None:
    c = Chain("c", (rr(NURSE), rr(CONSOLE, LEAD), every(LEAD)))
    state, actions = start(c, 0, roster())
    assert actions == [Skipped(0, 0), Notify(1, 0, 0, ()), Schedule(60_000, 1, 0)]
    state, actions = advance(state, Timeout(1, 0), 60_000, roster())
    assert actions == [Skipped(2, 0), Exhausted()] and state.exhausted and state.due_ms is None


def test_a_chain_with_nobody_anywhere_is_exhausted_at_once_after_its_repeats() -> None:
    state, actions = start(Chain("c", (every(NURSE),), repeat=1), 0, roster())
    assert actions == [Skipped(0, 0), Skipped(0, 1), Exhausted()] and state.exhausted


def test_repeat_from_a_chosen_step_then_exhaustion() -> None:
    c = Chain("c", tuple(Step((CONSOLE,), (), 10_000) for _ in range(3)), repeat=2, repeat_from=1)
    state, actions = start(c, 0)
    entered = [(a.step, a.round) for a in actions if isinstance(a, Notify)]
    now = 0
    while not state.exhausted:
        assert state.due_ms is not None
        now = state.due_ms
        state, actions = advance(state, Timeout(state.step, state.round), now)
        entered += [(a.step, a.round) for a in actions if isinstance(a, Notify)]
    assert entered == [(0, 0), (1, 0), (2, 0), (1, 1), (2, 1), (1, 2), (2, 2)]
    assert actions == [Exhausted()]


def test_a_priority_jump_moves_to_the_new_chain_from_its_first_step() -> None:
    old = Chain("standard", (every(CONSOLE, ack_s=300), every(CONSOLE, NURSE, ack_s=600)))
    new = Chain("urgent-night", (rr(CONSOLE, NURSE, ack_s=45), every(CONSOLE, LEAD, ack_s=90)))
    people = roster(nurse=["n1", "n2"], team_lead=["tl1"])
    state, _ = start(old, 0, people)
    state, _ = advance(state, Timeout(0, 0), 300_000, people)
    state, actions = advance(state, Rechain(new), 310_000, people)
    assert actions == [
        Unschedule(1, 0),
        Rechained("standard", "urgent-night", 1),
        Notify(0, 0, 0, ("n1",), epoch=1),
        Schedule(355_000, 0, 0, 0, epoch=1),
    ]
    assert state.chain == new and (state.step, state.round, state.turn, state.epoch) == (0, 0, 0, 1)
    for stale in (Timeout(1, 0), Timeout(0, 0)):  # the old chain's timers, same position included
        assert advance(state, stale, 400_000, people) == (state, [])
    assert advance(state, Rechain(new), 320_000, people) == (state, [])  # already there
    state, actions = advance(state, Timeout(0, 0, 0, epoch=1), 355_000, people)
    assert actions[0] == Notify(0, 0, 1, ("n2",), epoch=1)


def test_no_jump_once_stopped_and_a_jump_after_exhaustion_starts_the_new_chain() -> None:
    new = Chain("urgent", (every(CONSOLE, ack_s=30),))
    state, _ = start(chain(10), 0)
    stopped, _ = advance(state, Stop("acknowledged"), 1_000)
    assert advance(stopped, Rechain(new), 2_000) == (stopped, [])
    exhausted, actions = advance(state, Timeout(0, 0), 10_000)
    assert actions == [Exhausted()]
    moved, actions = advance(exhausted, Rechain(new), 20_000)
    assert actions == [Rechained("c", "urgent", 0), Notify(0, 0, epoch=1), Schedule(50_000, 0, 0, epoch=1)]
    assert not moved.exhausted


def test_editing_and_reloading_chains_leaves_a_running_escalation_unchanged() -> None:
    text = "chains:\n  urgent:\n    steps:\n"
    text += "      - {targets: [console], ack_within: 60s}\n      - {targets: [console], ack_within: 120s}\n"
    first = parse_book(text).chains["urgent"]
    state, _ = start(first, 0)
    stored = msgspec.json.encode(state)
    reloaded = parse_book(text.replace("120s", "5s")).chains["urgent"]
    assert reloaded != first
    state = msgspec.json.decode(stored, type=Escalation)
    assert advance(state, Rechain(reloaded), 1_000) == (state, [])  # same name: the frozen copy stays
    state, actions = advance(state, Timeout(0, 0), 60_000)
    assert actions[-1] == Schedule(180_000, 1, 0)


DISPATCH_CHAIN = Chain("c", (every(CONSOLE, NURSE, ack_s=60), every(CONSOLE, LEAD, ack_s=120)))


def test_dispatch_pages_outside_the_chain_and_an_accept_pauses_it_until_released() -> None:
    people = roster(nurse=["n1"])
    state, _ = start(DISPATCH_CHAIN, 0, people)
    state, actions = advance(state, Dispatch("n9"), 10_000, people)
    assert actions == [NotifyDispatch("n9", 1)] and state.due_ms == 60_000
    assert advance(state, Dispatch("n9"), 11_000, people) == (state, [])  # already paged
    state, actions = advance(state, DispatchAccepted("n9"), 20_000, people)
    assert actions == [Unschedule(0, 0), Paused("n9", 0, 0)] and state.paused and state.due_ms is None
    assert advance(state, Timeout(0, 0), 60_000, people) == (state, [])
    assert why_not_live(state, "n1", 0, 0) == NotLive.PAUSED
    assert advance(state, Decline("n1", 0, 0), 61_000, people) == (state, [])
    state, actions = advance(state, DispatchReleased("n9"), 600_000, people)
    assert actions == [Resumed("n9", 0, 0), Notify(0, 0, 0, ("n1",), epoch=1), Schedule(660_000, 0, 0, 0, epoch=1)]
    assert state.dispatches[0].status == DispatchStatus.RELEASED and not state.paused
    state, actions = advance(state, Timeout(0, 0, 0, epoch=1), 660_000, people)
    assert actions[0] == Notify(1, 0, 0, (), epoch=1)


def test_the_chain_resumes_only_when_no_dispatched_person_holds_the_alarm() -> None:
    people = roster(nurse=["n1"])
    state, _ = start(DISPATCH_CHAIN, 0, people)
    for staff in ("a", "b"):
        state, _ = advance(state, Dispatch(staff), 1_000, people)
    state, actions = advance(state, DispatchDeclined("b"), 2_000, people)  # before accepting: chain untouched
    assert actions == [] and not state.paused and state.due_ms == 60_000
    state, actions = advance(state, Dispatch("b"), 2_500, people)
    assert actions == [NotifyDispatch("b", 3)]
    state, _ = advance(state, DispatchAccepted("a"), 3_000, people)
    state, actions = advance(state, DispatchAccepted("b"), 4_000, people)
    assert actions == [] and state.paused
    state, actions = advance(state, DispatchReleased("a"), 5_000, people)
    assert actions == [] and state.paused
    state, actions = advance(state, DispatchDeclined("b"), 6_000, people)  # accepted, then cannot after all
    assert actions[0] == Resumed("b", 0, 0) and not state.paused
    for stale in (DispatchAccepted("a"), DispatchReleased("a"), DispatchReleased("zz"), DispatchDeclined("zz")):
        assert advance(state, stale, 7_000, people) == (state, [])


def test_a_stop_while_paused_ends_it_and_a_release_then_does_not_resume() -> None:
    state, _ = start(DISPATCH_CHAIN, 0)
    state, _ = advance(state, Dispatch("n9"), 1_000)
    state, _ = advance(state, DispatchAccepted("n9"), 2_000)
    state, actions = advance(state, Stop("resolved"), 3_000)
    assert actions == [] and state.stopped
    state, actions = advance(state, DispatchReleased("n9"), 4_000)
    assert actions == [] and state.stopped and state.due_ms is None


def test_a_jump_while_paused_waits_for_the_release_then_starts_the_new_chain() -> None:
    new = Chain("urgent", (every(CONSOLE, ack_s=30),))
    state, _ = start(DISPATCH_CHAIN, 0)
    state, _ = advance(state, Dispatch("n9"), 1_000)
    state, _ = advance(state, DispatchAccepted("n9"), 2_000)
    state, actions = advance(state, Rechain(new), 3_000)
    assert actions == [Rechained("c", "urgent", 0)] and state.paused and state.chain == new
    state, actions = advance(state, DispatchReleased("n9"), 4_000)
    assert actions == [Resumed("n9", 0, 0), Notify(0, 0, epoch=2), Schedule(34_000, 0, 0, epoch=2)]


OLD_STORED = (
    b'{"chain":{"name":"urgent","steps":[{"targets":[{"kind":"console","value":""},'
    b'{"kind":"role","value":"nurse"}],"channels":["console","mqtt"],"ack_within_ms":60000}],"repeat":1},'
    b'"step":0,"round":0,"due_ms":61000,"stopped":false,"exhausted":false}'
)


def test_an_escalation_stored_by_the_old_version_decodes_and_runs() -> None:
    state = msgspec.json.decode(OLD_STORED, type=Escalation)
    assert state.current.channels == (Channel.CONSOLE, Channel.HANDSET)
    assert (state.current.notify, state.people, state.epoch, state.turn) == (NotifyMode.ALL, (), 0, 0)
    assert state.current.targets[1].ack_within_ms is None
    _, actions = advance(state, Timeout(0, 0), 61_000)
    assert actions == [Notify(0, 1), Schedule(121_000, 0, 1)]
    assert advance(state, Stop("acknowledged"), 1_000)[1] == [Unschedule(0, 0)]
    assert b'"handset"' in msgspec.json.encode(state) and b'"mqtt"' not in msgspec.json.encode(state)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.booleans(), st.integers(0, 3), st.booleans(), st.integers(1, 300)), min_size=1, max_size=4
    ),
    repeat=st.integers(0, 2),
    repeat_from=st.integers(0, 3),
    events=st.lists(
        st.tuples(
            st.booleans(),
            st.integers(0, 4),
            st.integers(0, 2),
            st.integers(0, 3),
            st.integers(0, 3),
            st.integers(0, 500),
        ),
        max_size=40,
    ),
)
def test_round_robin_and_declines_enter_every_position_once_in_order(
    steps: list[tuple[bool, int, bool, int]],
    repeat: int,
    repeat_from: int,
    events: list[tuple[bool, int, int, int, int, int]],
) -> None:
    """Random stale, duplicate, early and genuine timers and declines: the positions
    notified are exactly the chain's positions (steps with nobody skipped), in order,
    each once, and every timer set is either fired or unscheduled by the end."""
    built: list[Step] = []
    on_duty: dict[str, list[str]] = {}
    for i, (round_robin, n, console, ack) in enumerate(steps):
        targets = ((CONSOLE,) if console else ()) + (Target(TargetKind.ROLE, f"r{i}"),)
        built.append(Step(targets, (), ack * 1000, NotifyMode.ROUND_ROBIN if round_robin else NotifyMode.ALL))
        on_duty[f"r{i}"] = [f"p{i}.{k}" for k in range(n)]
    c = Chain("c", tuple(built), repeat, min(repeat_from, len(steps) - 1))
    people = roster(**on_duty)
    expected: list[tuple[int, int, int]] = []
    for r in range(repeat + 1):
        for s in range(c.repeat_from if r else 0, len(steps)):
            round_robin, n, console, _ = steps[s]
            if n == 0 and not console:
                continue
            expected += [(r, s, t) for t in range(n if round_robin and n else 1)]

    live: set[tuple[int, int, int]] = set()
    entered: list[tuple[int, int, int]] = []

    def apply(actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Notify):
                entered.append((a.round, a.step, a.turn))
            elif isinstance(a, Schedule):
                live.add((a.step, a.round, a.turn))
            elif isinstance(a, Unschedule):
                live.remove((a.step, a.round, a.turn))

    state, actions = start(c, 0, people)
    apply(actions)
    now = 0
    for is_timeout, step, round_, turn, k, jitter in events:
        now += jitter
        event = Timeout(step, round_, turn) if is_timeout else Decline(f"p{step}.{k}", step, round_, turn)
        before = (state.step, state.round, state.turn)
        state, actions = advance(state, event, now, people)
        if is_timeout and actions:
            live.remove(before)
        apply(actions)
    for _ in range(len(expected) + 1):
        if state.exhausted:
            break
        assert state.due_ms is not None
        now = max(now, state.due_ms)
        live.remove((state.step, state.round, state.turn))
        state, actions = advance(state, Timeout(state.step, state.round, state.turn), now, people)
        apply(actions)
    assert state.exhausted and not live
    assert entered == expected
