"""The retry policy, pure: exponential ceilings, full jitter within them, a seeded rng
gives the same delays; and the resident-free text of the human channels.

`page()` and `delivery()` build the deliveries the channel tests send."""

from __future__ import annotations

import random

import msgspec
import pytest

from responsecentre.deliveries import deadletter, render
from responsecentre.deliveries.base import send_timeout_s
from responsecentre.deliveries.retry import RetryPolicy, final_outcome
from responsecentre.escalation.delivery import Channel, Contact, Delivery, Outcome, PageBody, Receipt


def page(tenant: str = "t1", page_id: str = "01JDC3Q8ZK6W3J8N4X2V5R7T9P", **changes: object) -> PageBody:
    body = PageBody(
        alarm_id="01JDC3Q8ZK6W3J8N4X2V5R7T9M",
        tenant=tenant,
        kind="fall",
        priority="critical",
        home_id="h01",
        zone="north",
        step=1,
        round=0,
        ts_ms=1_795_317_225_120,
        page_id=page_id,
    )
    return msgspec.structs.replace(body, **changes)


def delivery(
    channel: Channel,
    address: str,
    tenant: str = "t1",
    receipt_within_ms: int = 5_000,
    fallback: tuple[Contact, ...] = (),
    delivery_id: str = "d-01JDC3Q8ZK6W3J8N4X2V5R7T9M-1-0-n1",
) -> Delivery:
    body = page(tenant)
    return Delivery(
        id=delivery_id,
        page_id=body.page_id,
        alarm_id=body.alarm_id,
        tenant=tenant,
        channel=channel,
        address=address,
        recipient="n1",
        body=body,
        receipt_within_ms=receipt_within_ms,
        fallback=fallback,
    )


POLICY = RetryPolicy(attempts=6, base_ms=100, factor=2.0, cap_ms=1_000)


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(0, 100), (1, 200), (2, 400), (3, 800), (4, 1_000), (5, 1_000), (10_000, 1_000)]
)
def test_the_ceiling_grows_by_the_factor_up_to_the_cap(attempt: int, ceiling: int) -> None:
    assert POLICY.ceiling_ms(attempt) == ceiling


@pytest.mark.parametrize("seed", range(20))
def test_every_delay_is_full_jitter_within_its_ceiling(seed: int) -> None:
    rng = random.Random(seed)
    for attempt in range(12):
        for _ in range(50):
            assert 0 <= POLICY.delay_ms(attempt, rng) <= min(POLICY.cap_ms, POLICY.base_ms * 2**attempt)


def test_the_jitter_spreads_over_the_whole_range() -> None:
    """Full jitter, not a fixed delay with a little noise: retries of deliveries that
    failed together come back spread out."""
    rng = random.Random(7)
    delays = [POLICY.delay_ms(3, rng) for _ in range(2_000)]
    assert min(delays) < 80 and max(delays) > 720  # ceiling 800
    assert 300 < sum(delays) / len(delays) < 500  # about half the ceiling


def test_a_seeded_rng_gives_the_same_delays() -> None:
    first = [POLICY.delay_ms(n, random.Random(42)) for n in range(6)]
    assert first == [POLICY.delay_ms(n, random.Random(42)) for n in range(6)]
    a, b = random.Random(1), random.Random(1)
    assert [POLICY.delay_ms(n % 6, a) for n in range(30)] == [POLICY.delay_ms(n % 6, b) for n in range(30)]


@pytest.mark.parametrize(("attempts", "last"), [(1, 0), (3, 2), (6, 5)])
def test_the_policy_is_exhausted_after_its_last_try(attempts: int, last: int) -> None:
    policy = RetryPolicy(attempts=attempts, base_ms=1, cap_ms=1)
    assert [policy.exhausted(n) for n in range(last + 2)] == [False] * last + [True, True]


@pytest.mark.parametrize(
    "kwargs", [{"attempts": 0}, {"base_ms": -1}, {"cap_ms": -1}, {"factor": 0.5}], ids=lambda k: next(iter(k))
)
def test_a_policy_that_makes_no_sense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_a_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError):
        POLICY.delay_ms(-1, random.Random(0))


def test_no_receipt_falls_back_when_the_person_has_another_channel_else_is_dead() -> None:
    alone = delivery(Channel.HANDSET, "n1")
    assert final_outcome(alone) == Outcome.DEAD
    assert final_outcome(msgspec.structs.replace(alone, fallback=(Contact(Channel.SMS, "+4791234567"),))) == (
        Outcome.FELL_BACK
    )


@pytest.mark.parametrize(("window_ms", "channel_s", "bound_s"), [(300, 10.0, 0.3), (60_000, 10.0, 10.0), (0, 7.0, 7.0)])
def test_a_try_never_outlasts_the_receipt_window(window_ms: int, channel_s: float, bound_s: float) -> None:
    assert send_timeout_s(delivery(Channel.WEBHOOK, "http://x", receipt_within_ms=window_ms), channel_s) == bound_s


def test_a_dead_letter_carries_the_whole_delivery_and_round_trips() -> None:
    d = delivery(Channel.WEBHOOK, "http://127.0.0.1:9/hook")
    dead = Receipt(d.id, d.channel, d.address, Outcome.DEAD, 12, attempt=4, detail="HTTP 503")
    letter = deadletter.dead_letter(d, dead)
    assert deadletter.decode(deadletter.encode(letter)) == letter
    with pytest.raises(ValueError):
        deadletter.dead_letter(d, msgspec.structs.replace(dead, outcome=Outcome.FAILED))


def test_the_human_text_is_short_and_resident_free() -> None:
    body = page()
    subject, text = render(body)
    assert len(text) <= 160, text  # one SMS
    for needle in ("CRITICAL fall", "home h01", "zone north", "step 1", body.page_id, "Answer in"):
        assert needle in text, needle
    assert "step 1" in subject and "h01" in subject
    assert "round" not in text  # the first time through says nothing about rounds
    _, again = render(msgspec.structs.replace(body, round=1, dispatched=True, incident_id="inc-7"))
    assert again.startswith("Dispatched: ") and "(round 2)" in again and "Incident inc-7." in again
