"""Classical channel between Alice, Bob and the relay (Charlie) used by the distillation.

Interface
---------
``ClassicalChannel(parties=("alice", "bob", "charlie"), *, tamper=None)``
    ``send(src, dst, topic, payload)`` queues one message; ``recv(dst, topic, src=None)`` pops the
    oldest matching one (``LookupError`` naming the topic when there is none).
    ``broadcast(src, topic, payload)`` sends to every other party.
    Payloads are numpy arrays, bytes, numbers, strings or dicts/lists/tuples of those; their size
    in bits is counted per (src, dst) in ``bits_sent`` and per topic in ``bits_by_topic`` (arrays of
    0/1 count one bit per element when their dtype is bool or they are tagged as bit arrays with
    :class:`Bits`, otherwise their byte size x 8).
    ``log`` keeps ``(seq, src, dst, topic, bits)`` for every message.
    ``tamper(src, dst, topic, payload) -> payload``: optional hook applied on send; tests use it to
    inject errors (for example to make error verification fail); a real deployment puts
    authentication (a Wegman-Carter tag) and a transport behind the same two calls.

The algorithms in :mod:`combkey.distill` talk only through ``send``/``recv``; they never share
Python objects between the two ends, so replacing this in-memory queue by an authenticated network
transport does not touch them.
"""
from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np

__all__ = ["ClassicalChannel", "Bits"]


@dataclass(frozen=True)
class Bits:
    """A 0/1 array sent as a bit string (counted as one bit per element)."""

    array: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "array", np.asarray(self.array, dtype=np.uint8))


def payload_bits(payload):
    """Return the number of bits a payload occupies on the wire (see module docstring)."""
    if isinstance(payload, Bits):
        return int(payload.array.size)
    if isinstance(payload, np.ndarray):
        if payload.dtype == np.bool_:
            return int(payload.size)
        return int(payload.nbytes * 8)
    if isinstance(payload, (bytes, bytearray)):
        return 8 * len(payload)
    if isinstance(payload, str):
        return 8 * len(payload.encode())
    if isinstance(payload, (bool, np.bool_)):
        return 1
    if isinstance(payload, (int, float, np.integer, np.floating)):
        return 64
    if payload is None:
        return 0
    if isinstance(payload, dict):
        return sum(payload_bits(v) for v in payload.values())
    if isinstance(payload, (list, tuple)):
        return sum(payload_bits(v) for v in payload)
    raise TypeError(f"payload must be an array, bytes, number, string, Bits or a container of "
                    f"those, not {type(payload).__name__!r}")


class ClassicalChannel:
    """In-memory, ordered, counted message channel between named parties."""

    def __init__(self, parties=("alice", "bob", "charlie"), *, tamper=None):
        self.parties = tuple(parties)
        if len(set(self.parties)) != len(self.parties) or len(self.parties) < 2:
            raise ValueError(f"parties must be at least two distinct names, not {parties!r}")
        self.tamper = tamper
        self._queues = defaultdict(deque)
        self.bits_sent = defaultdict(int)
        self.bits_by_topic = defaultdict(int)
        self.log = []

    def _check_party(self, name, role):
        if name not in self.parties:
            raise ValueError(f"{role} must be one of {self.parties!r}, not {name!r}")

    def send(self, src, dst, topic, payload):
        """Queue ``payload`` from ``src`` to ``dst`` under ``topic``."""
        self._check_party(src, "src")
        self._check_party(dst, "dst")
        if src == dst:
            raise ValueError(f"dst must differ from src, not {dst!r}")
        if self.tamper is not None:
            payload = self.tamper(src, dst, topic, payload)
        bits = payload_bits(payload)
        self.bits_sent[(src, dst)] += bits
        self.bits_by_topic[topic] += bits
        self.log.append((len(self.log), src, dst, topic, bits))
        self._queues[(dst, topic)].append((src, payload))

    def broadcast(self, src, topic, payload):
        """Send ``payload`` to every party except ``src``."""
        for dst in self.parties:
            if dst != src:
                self.send(src, dst, topic, payload)

    def recv(self, dst, topic, src=None):
        """Pop the oldest message for ``dst`` under ``topic`` (optionally only from ``src``)."""
        self._check_party(dst, "dst")
        queue = self._queues[(dst, topic)]
        for k, (s, payload) in enumerate(queue):
            if src is None or s == src:
                del queue[k]
                return payload
        raise LookupError(f"no message for {dst!r} under topic {topic!r}"
                          + (f" from {src!r}" if src else ""))

    def pending(self):
        """Return the number of messages sent but not yet received."""
        return sum(len(q) for q in self._queues.values())

    def total_bits(self):
        """Return the total number of bits sent over the channel."""
        return sum(self.bits_sent.values())
