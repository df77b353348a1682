"""A dead letter: the delivery that got no receipt on any try, and the last try's receipt.

The shell appends it to a Redis stream (the key is the store's); an operator, or a later
resend, reads it back with `decode` and has the whole `Delivery` to send again, not a
summary. One encoder and one decoder, used by both sides.
"""

from __future__ import annotations

import msgspec

from responsecentre.escalation.delivery import Delivery, Outcome, Receipt


class DeadLetter(msgspec.Struct, frozen=True):
    delivery: Delivery
    receipt: Receipt  # outcome DEAD: the channel, the tries made, the last detail


_decoder = msgspec.json.Decoder(DeadLetter)


def dead_letter(delivery: Delivery, receipt: Receipt) -> DeadLetter:
    if receipt.outcome != Outcome.DEAD or receipt.delivery_id != delivery.id:
        raise ValueError(f"not the dead receipt of delivery {delivery.id}: {receipt.outcome} {receipt.delivery_id}")
    return DeadLetter(delivery, receipt)


def encode(letter: DeadLetter) -> bytes:
    return msgspec.json.encode(letter)


def decode(raw: bytes | str) -> DeadLetter:
    return _decoder.decode(raw)
