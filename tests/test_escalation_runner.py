"""The chain runner, pure: tables of (events, times) -> expected position, no sleeping."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responsecentre.escalation.chains import Chain, Channel, Step, Target, TargetKind, parse_chains
from responsecentre.escalation.runner import (
    Exhausted,
    Notify,
    Schedule,
    Stop,
    Timeout,
    Unschedule,
    advance,
    start,
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
