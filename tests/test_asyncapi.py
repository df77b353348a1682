"""docs/asyncapi.yaml against contract v1: the published document cannot drift from what
ingest accepts, nor from what the centre publishes.

`jsonschema` is not a dependency of the project (nor installed), so the payload schemas
are checked with the small draft-07 subset validator below. It refuses any keyword it does
not implement, so the document cannot lean on a constraint these tests silently ignore.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from ulid import ULID

from responsecentre import contract
from responsecentre.alarms.model import PRIORITY_RANK, AlarmState, Trigger, raise_alarm
from responsecentre.alarms.view import integration_view
from responsecentre.deliveries.handset import encode_page
from responsecentre.escalation.chains import Chain, Channel, Step, Target, TargetKind
from responsecentre.escalation.people import StaffMember, StaffRole
from responsecentre.escalation.planner import AlarmRef, StepContext, plan, plan_dispatch
from responsecentre.escalation.runner import Notify, NotifyDispatch
from responsecentre.sim.simulator import status_payload
from responsecentre.store.keys import KEYS, SEEN_TTL_S

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"
DOC: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text(encoding="utf-8"))
TS_MS = 1_795_317_165_120  # 2026-11-22T03:12:45.120Z


# -- a small JSON Schema (draft-07 subset) validator ------------------------------------------

ANNOTATIONS = frozenset({"title", "description", "examples", "format", "default", "$comment"})
BOUNDS = {
    "minimum": operator.ge,
    "maximum": operator.le,
    "exclusiveMinimum": operator.gt,
    "exclusiveMaximum": operator.lt,
}


def resolve(ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node: Any = DOC
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(node["$ref"])
    return node


def _is(instance: Any, name: str) -> bool:
    if name == "integer":
        return (isinstance(instance, int) and not isinstance(instance, bool)) or (
            isinstance(instance, float) and instance.is_integer()
        )
    return {
        "object": lambda: isinstance(instance, dict),
        "array": lambda: isinstance(instance, list),
        "string": lambda: isinstance(instance, str),
        "boolean": lambda: isinstance(instance, bool),
        "null": lambda: instance is None,
        "number": lambda: isinstance(instance, int | float) and not isinstance(instance, bool),
    }[name]()


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def errors(schema: Any, instance: Any, path: str = "$") -> list[str]:
    """Every way `instance` breaks `schema` (empty: valid)."""
    if isinstance(schema, bool):
        return [] if schema else [f"{path}: no value is allowed here"]
    if "$ref" in schema:  # draft-07: a $ref's siblings are ignored
        return errors(resolve(schema["$ref"]), instance, path)
    out: list[str] = []
    for key, arg in schema.items():
        if key in ANNOTATIONS or key.startswith("x-") or key in ("then", "else"):
            continue
        if key == "type":
            names = [arg] if isinstance(arg, str) else arg
            if not any(_is(instance, n) for n in names):
                out.append(f"{path}: {instance!r} is not of type {arg}")
        elif key == "enum":
            if not any(_same(instance, e) for e in arg):
                out.append(f"{path}: {instance!r} is not one of {arg}")
        elif key == "const":
            if not _same(instance, arg):
                out.append(f"{path}: {instance!r} is not {arg!r}")
        elif key in ("minLength", "maxLength"):
            if isinstance(instance, str) and (len(instance) < arg if key == "minLength" else len(instance) > arg):
                out.append(f"{path}: length {len(instance)} breaks {key} {arg}")
        elif key == "pattern":
            if isinstance(instance, str) and not re.search(arg, instance):
                out.append(f"{path}: {instance!r} does not match {arg}")
        elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if _number(instance) and not BOUNDS[key](instance, arg):
                out.append(f"{path}: {instance!r} breaks {key} {arg}")
        elif key == "required":
            if isinstance(instance, dict):
                out += [f"{path}: {name!r} is required" for name in arg if name not in instance]
        elif key == "properties":
            if isinstance(instance, dict):
                for name, sub in arg.items():
                    if name in instance:
                        out += errors(sub, instance[name], f"{path}.{name}")
        elif key == "additionalProperties":
            if isinstance(instance, dict):
                known = schema.get("properties", {})
                for name in instance:
                    if name not in known:
                        out += errors(arg, instance[name], f"{path}.{name}")
        elif key == "items":
            if isinstance(instance, list):
                for i, item in enumerate(instance):
                    out += errors(arg, item, f"{path}[{i}]")
        elif key == "allOf":
            for sub in arg:
                out += errors(sub, instance, path)
        elif key == "anyOf":
            if all(errors(sub, instance, path) for sub in arg):
                out.append(f"{path}: {instance!r} matches none of anyOf")
        elif key == "oneOf":
            matched = sum(not errors(sub, instance, path) for sub in arg)
            if matched != 1:
                out.append(f"{path}: {instance!r} matches {matched} of oneOf, not exactly one")
        elif key == "not":
            if not errors(arg, instance, path):
                out.append(f"{path}: {instance!r} matches a `not`")
        elif key == "if":
            branch = "then" if not errors(arg, instance, path) else "else"
            if branch in schema:
                out += errors(schema[branch], instance, path)
        else:
            raise ValueError(f"{path}: the test validator does not implement {key!r}")
    return out


def subschemas(schema: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(schema, dict):
        return
    yield schema
    for sub in schema.get("properties", {}).values():
        yield from subschemas(sub)
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            yield from subschemas(sub)
    for key in ("if", "then", "else", "not", "items", "additionalProperties"):
        yield from subschemas(schema.get(key))


# -- helpers over the document --------------------------------------------------------------


def message(name: str) -> dict[str, Any]:
    return DOC["components"]["messages"][name]


def payload_schema(message_name: str) -> dict[str, Any]:
    return message(message_name)["payload"]


def address(channel: str, **params: str) -> str:
    template = DOC["channels"][channel]["address"]
    names = re.findall(r"\{([^}]+)\}", template)
    assert sorted(names) == sorted(params), f"{channel} has parameters {names}"
    return re.sub(r"\{([^}]+)\}", lambda m: params[m.group(1)], template)


def event_examples() -> list[dict[str, Any]]:
    """Every example of every message the device-events channel carries."""
    found = []
    for ref in DOC["channels"]["deviceEvents"]["messages"].values():
        found += deref(ref).get("examples", [])
    return found


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


# -- the document ---------------------------------------------------------------------------


def test_is_an_asyncapi_3_document_for_mosquitto_over_mqtt5() -> None:
    assert re.fullmatch(r"3\.\d+\.\d+", str(DOC["asyncapi"]))
    assert DOC["info"]["title"] and DOC["info"]["version"]
    assert DOC["defaultContentType"] == "application/json"
    server = DOC["servers"]["mosquitto"]
    assert server["protocol"] == "mqtt" and str(server["protocolVersion"]) == "5"
    assert set(DOC["channels"]) == {
        "deviceEvents",
        "deviceStatus",
        "deviceCommands",
        "alarmStates",
        "staffPages",
        "staffReplies",
        "staffReplyOutcomes",
    }


def test_every_reference_resolves() -> None:
    for ref in refs(DOC):
        assert resolve(ref) is not None, ref


def test_operations_reference_their_channels_own_messages() -> None:
    for name, op in DOC["operations"].items():
        channel_ref = op["channel"]["$ref"]
        for msg in op["messages"]:
            assert msg["$ref"].startswith(channel_ref + "/messages/"), f"{name}: {msg['$ref']}"


def test_every_address_parameter_is_declared() -> None:
    for name, channel in DOC["channels"].items():
        in_address = set(re.findall(r"\{([^}]+)\}", channel["address"]))
        assert in_address == set(channel.get("parameters", {})), name


def test_channel_addresses_are_the_contracts_topics() -> None:
    assert address("deviceEvents", tenant="t", device_id="d") == contract.events_topic("t", "d")
    assert address("deviceStatus", tenant="t", device_id="d") == contract.status_topic("t", "d")
    assert address("alarmStates", tenant="t", alarm_id="a") == contract.alarm_topic("t", "a")
    assert address("staffPages", tenant="t", staff_id="s") == contract.page_topic("t", "s")
    # contract.py has no command topic function: it is the events topic's sibling.
    sibling = contract.events_topic("t", "d").removesuffix("/events") + "/commands"
    assert address("deviceCommands", tenant="t", device_id="d") == sibling
    assert address("deviceEvents", tenant="+", device_id="+") == contract.EVENTS_SUBSCRIPTION
    assert all(c["address"].startswith(contract.PREFIX + "/") for c in DOC["channels"].values())


@pytest.mark.parametrize(
    ("channel", "action", "retain"),
    [
        ("deviceEvents", "receive", False),
        ("deviceStatus", "receive", True),
        ("deviceCommands", "send", False),
        ("alarmStates", "send", False),
        ("staffPages", "send", False),
    ],
)
def test_operation_direction_qos_and_retain(channel: str, action: str, retain: bool) -> None:
    ops = [op for op in DOC["operations"].values() if op["channel"]["$ref"] == f"#/channels/{channel}"]
    assert len(ops) == 1
    op = ops[0]
    assert op["action"] == action
    assert op["bindings"]["mqtt"]["qos"] == 1
    assert op["bindings"]["mqtt"]["retain"] is retain


def test_status_channel_documents_the_last_will() -> None:
    text = DOC["channels"]["deviceStatus"]["description"] + message("DeviceStatus")["description"]
    assert "Last Will" in text and "online: false" in text


# -- the event payload against contract.py ----------------------------------------------------


def test_event_type_enum_is_the_contracts_list_in_order() -> None:
    schema = deref(payload_schema("DeviceEvent"))
    assert schema["properties"]["type"]["enum"] == list(contract.EVENT_TYPES)


def test_value_required_types_are_the_contracts() -> None:
    schema = deref(payload_schema("DeviceEvent"))
    conditions = [s for s in schema["allOf"] if "if" in s]
    assert len(conditions) == 1
    cond = conditions[0]
    assert cond["if"]["required"] == ["type"]
    assert set(cond["if"]["properties"]["type"]["enum"]) == contract.VALUE_REQUIRED
    assert cond["then"]["required"] == ["value"]
    assert schema["properties"]["value"]["type"] == "number"


def test_limits_are_the_contracts() -> None:
    msg = message("DeviceEvent")
    assert msg["x-max-payload-bytes"] == contract.MAX_PAYLOAD_BYTES
    assert f"at most {contract.MAX_PAYLOAD_BYTES} bytes" in msg["description"]
    id_forms = deref(deref(payload_schema("DeviceEvent"))["properties"]["id"])["oneOf"]
    id_string = next(s for s in id_forms if s["type"] == "string")
    assert (id_string["minLength"], id_string["maxLength"]) == (1, contract.MAX_ID_LENGTH)
    assert msg["x-dedup-window-seconds"] == SEEN_TTL_S


def test_epoch_millisecond_bounds_are_the_contracts() -> None:
    epoch = next(s for s in resolve("#/components/schemas/Timestamp")["oneOf"] if s.get("type") == "integer")
    assert contract.parse_ts(epoch["minimum"]) == epoch["minimum"]
    assert contract.parse_ts(epoch["maximum"]) == epoch["maximum"]
    for outside in (epoch["minimum"] - 1, epoch["maximum"] + 1):
        with pytest.raises(contract.Rejected):
            contract.parse_ts(outside)


def test_reject_reasons_and_dead_letters_are_documented() -> None:
    msg = message("DeviceEvent")
    assert set(msg["x-reject-reasons"]) == {str(r) for r in contract.RejectReason}
    assert all(msg["x-reject-reasons"].values())
    assert "dead-letter" in msg["description"] and KEYS.dead_letters() in msg["description"]
    assert "redelivery is harmless" in msg["description"]
    assert "topic only" in msg["description"]


@pytest.mark.parametrize("example", event_examples(), ids=lambda e: e["name"])
def test_example_events_are_accepted_by_ingest(example: dict[str, Any]) -> None:
    params = DOC["components"]["parameters"]
    topic = contract.events_topic(params["tenant"]["examples"][0], params["device_id"]["examples"][0])
    body = example["payload"]
    event = contract.decode_event(topic, msgspec.json.encode(body))
    assert (event.id, event.type) == (str(body["id"]), body["type"])
    assert event.value == body.get("value") and event.data == body.get("data")
    assert errors(payload_schema("DeviceEvent"), body) == []


def test_every_event_type_family_has_an_example() -> None:
    families = {t.split(".")[0] for t in contract.EVENT_TYPES}
    shown = {e["payload"]["type"].split(".")[0] for e in event_examples()}
    assert families <= shown
    # Both time forms and both id forms are shown.
    assert {type(e["payload"]["ts"]) for e in event_examples()} == {str, int}
    assert {type(e["payload"]["id"]) for e in event_examples()} == {str, int}


@pytest.mark.parametrize("type_", contract.EVENT_TYPES)
def test_encoded_events_validate_against_the_schema(type_: str) -> None:
    schema = payload_schema("DeviceEvent")
    value = 12.5 if type_ in contract.VALUE_REQUIRED else None
    for payload in (
        contract.encode_event(f"dev-{type_}-1", type_, TS_MS, value),
        contract.encode_event(7, type_, TS_MS, 1.0, {"room": "hall"}),
        contract.encode_event(str(ULID()), type_, 0, value),
    ):
        body = json.loads(payload)
        assert errors(schema, body) == [], body
        contract.decode_event(contract.events_topic("t", "d"), payload)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"type": "alarm.button", "ts": 1},
        {"id": "", "type": "alarm.button", "ts": 1},
        {"id": "x" * (contract.MAX_ID_LENGTH + 1), "type": "alarm.button", "ts": 1},
        {"id": True, "type": "alarm.button", "ts": 1},
        {"id": "a", "ts": 1},
        {"id": "a", "type": "nope", "ts": 1},
        {"id": "a", "type": "alarm.button"},
        {"id": "a", "type": "alarm.button", "ts": "2026-11-22T03:12:45"},
        {"id": "a", "type": "alarm.button", "ts": "yesterday"},
        {"id": "a", "type": "alarm.button", "ts": -5},
        {"id": "a", "type": "alarm.button", "ts": 32503680000000},
        {"id": "a", "type": "alarm.button", "ts": 1, "value": "high"},
        {"id": "a", "type": "alarm.button", "ts": 1, "value": True},
        {"id": "a", "type": "alarm.button", "ts": 1, "data": ["room"]},
        {"id": "a", "type": "temperature", "ts": 1},
        {"id": "a", "type": "temperature", "ts": 1, "value": None},
        {"id": "a", "type": "device.battery", "ts": 1, "data": {"level": 14}},
    ],
)
def test_the_schema_rejects_what_ingest_rejects(body: Any) -> None:
    with pytest.raises(contract.Rejected):
        contract.decode_event(contract.events_topic("t", "d"), msgspec.json.encode(body))
    assert errors(payload_schema("DeviceEvent"), body)


# -- what the centre and the devices publish --------------------------------------------------


def test_every_message_example_validates() -> None:
    for name, msg in DOC["components"]["messages"].items():
        for example in msg.get("examples", []):
            assert errors(msg["payload"], example["payload"]) == [], f"{name}/{example['name']}"


def test_status_payloads_validate() -> None:
    for body in (status_payload(True, 87, TS_MS), status_payload(False, None, TS_MS), status_payload(True, 100, 0)):
        assert errors(payload_schema("DeviceStatus"), json.loads(body)) == [], body
    assert errors(payload_schema("DeviceStatus"), {"online": True, "battery": 101, "ts": 0})
    assert errors(payload_schema("DeviceCommand"), []) and not errors(payload_schema("DeviceCommand"), {})


PAGING = Chain("urgent", (Step((Target(TargetKind.STAFF, "n-0042"),), (Channel.HANDSET,), 60_000),), repeat=0)


def _alarm() -> Any:
    trigger = Trigger("c1", "fall-not-cancelled", "fall", "critical", "urgent", "h01", "north", "h01-fall", TS_MS)
    alarm, _, _ = raise_alarm(str(ULID()), "t", trigger, PAGING, TS_MS)
    return alarm


def test_alarm_state_payload_is_the_integration_view() -> None:
    schema = deref(payload_schema("AlarmState"))
    view = integration_view(_alarm())
    assert errors(schema, view) == []
    assert set(schema["properties"]) == set(view) == set(schema["required"])
    assert schema["properties"]["state"]["enum"] == [str(s) for s in AlarmState]
    assert schema["properties"]["priority"]["enum"] == list(PRIORITY_RANK)


def test_page_payload_is_what_the_planner_sends_to_a_handset() -> None:
    alarm = _alarm()
    nurse = StaffMember("t", "n-0042", "Nurse", (StaffRole.NURSE,), ("north",))
    ctx = StepContext(on_duty={StaffRole.NURSE: (nurse,)})
    ref = AlarmRef(alarm.id, alarm.tenant, alarm.kind, alarm.priority, alarm.home_id, alarm.zone)
    schema = deref(payload_schema("Page"))
    planned = plan(ref, PAGING, Notify(step=0, round=0), ctx, TS_MS)
    dispatched = plan_dispatch(ref, NotifyDispatch("n-0042", 1), ctx, TS_MS)
    for delivery in (*planned.deliveries, *dispatched.deliveries):
        assert delivery.channel == Channel.HANDSET and delivery.address == "n-0042"
        body = msgspec.json.decode(encode_page(delivery.body))
        assert errors(schema, body) == []
        assert set(schema["required"]) <= set(body) <= set(schema["properties"])
    assert schema["properties"]["priority"]["enum"] == list(PRIORITY_RANK)


# -- the schemas themselves ------------------------------------------------------------------

PERSONAL = re.compile(r"name|address|phone|email|birth|ssn|national|personnummer|key_?safe|note|diagnos|lat|lon")


def test_schemas_use_only_what_the_validator_checks_and_no_personal_fields() -> None:
    known = ANNOTATIONS | {
        "$ref", "type", "enum", "const", "minLength", "maxLength", "pattern", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "required", "properties", "additionalProperties", "items",
        "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
    }  # fmt: skip
    roots = list(DOC["components"]["schemas"].values()) + [m["payload"] for m in DOC["components"]["messages"].values()]
    for root in roots:
        for schema in subschemas(root):
            assert set(schema) <= known, set(schema) - known
            for field in schema.get("properties", {}):
                assert not PERSONAL.search(field), f"{field!r} looks like personal data"
    assert "No personal data in any payload" in DOC["info"]["description"]
