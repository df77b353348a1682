"""The handset reply channels of docs/asyncapi.yaml against the code: the addresses are
the contract's topics, every documented example is a reply ingest accepts, and every
outcome the centre publishes validates against the documented schema."""

from __future__ import annotations

import json

import pytest

from responsecentre import contract
from tests.test_asyncapi import DOC, TS_MS, address, deref, errors, payload_schema


def test_reply_channels_are_the_contracts_topics() -> None:
    assert address("staffReplies", tenant="t", staff_id="s") == contract.replies_topic("t", "s")
    assert address("staffReplyOutcomes", tenant="t", staff_id="s") == contract.reply_outcome_topic("t", "s")
    assert address("staffReplies", tenant="+", staff_id="+") == contract.REPLIES_SUBSCRIPTION


@pytest.mark.parametrize(("operation", "action"), [("receiveReply", "receive"), ("sendReplyOutcome", "send")])
def test_reply_operations_direction_and_qos(operation: str, action: str) -> None:
    op = DOC["operations"][operation]
    assert op["action"] == action and op["bindings"]["mqtt"]["qos"] == 1 and op["bindings"]["mqtt"]["retain"] is False


def test_every_reply_example_is_accepted_and_the_answers_are_the_contracts() -> None:
    schema = deref(payload_schema("Reply"))
    assert schema["properties"]["answer"]["enum"] == list(contract.REPLY_ANSWERS)
    for example in DOC["components"]["messages"]["Reply"]["examples"]:
        body = json.dumps(example["payload"]).encode()
        reply = contract.decode_reply(contract.replies_topic("vestby", "n-0042"), body)
        assert (reply.tenant, reply.staff_id, reply.body.answer) == ("vestby", "n-0042", example["payload"]["answer"])


@pytest.mark.parametrize(
    "body",
    [
        {"alarm_id": "a", "answer": "resolve"},  # a resolve needs its closing code
        {"alarm_id": "a", "answer": "maybe"},
        {"alarm_id": "a", "answer": "accept", "note": "she fell in the kitchen"},  # no free text over MQTT
        {"answer": "accept"},
    ],
)
def test_the_schema_and_ingest_reject_the_same_replies(body: dict) -> None:
    assert errors(deref(payload_schema("Reply")), body)
    with pytest.raises(contract.Rejected):
        contract.decode_reply(contract.replies_topic("t", "s"), json.dumps(body).encode())


def test_outcomes_validate_against_the_schema() -> None:
    schema = deref(payload_schema("ReplyOutcome"))
    codes = schema["properties"]["outcome"]["enum"]
    for outcome in codes:
        body = contract.encode_reply_outcome("a1", "accept", outcome, "why", TS_MS, "r1", "acknowledged")
        assert errors(schema, json.loads(body)) == [], outcome
    bare = contract.encode_reply_outcome(None, None, "malformed_json", "not JSON", TS_MS)
    assert errors(schema, json.loads(bare)) == []


@pytest.mark.parametrize(
    "topic",
    ["rc/v1/t/staff/s/pages", "rc/v1/t/staff/s/replies/outcome", "rc/v1/t/staff/+/replies", "rc/v2/t/staff/s/replies"],
)
def test_a_reply_on_another_topic_is_a_bad_topic(topic: str) -> None:
    with pytest.raises(contract.Rejected) as caught:
        contract.decode_reply(topic, b'{"alarm_id": "a", "answer": "accept"}')
    assert caught.value.reason == contract.RejectReason.BAD_TOPIC
