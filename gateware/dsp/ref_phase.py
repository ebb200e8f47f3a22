"""Reference-phase estimator for TF-QKD from D0/D1 clicks of the reference slots.

In each reference period Alice and Bob send reference pulses with two relative reference phases
in quadrature (``quad = 0``: 0, ``quad = 1``: pi/2). At Charlie's beam splitter a click in D0 has
probability proportional to ``1 + V cos(phi - theta_ref)`` and D1 to ``1 - V cos(...)``, so with
``n0a, n1a`` the D0/D1 clicks of ``quad = 0`` slots and ``n0b, n1b`` those of ``quad = 1`` slots::

    I = n0a - n1a ~ cos(phi),   Q = n0b - n1b ~ sin(phi),   phi_est = atan2(Q, I)

one estimate per reference period, streamed with its four counts.

Members
-------
i : In(stream.Signature(RefEvent))
    One transfer per reference slot that clicked, or per period end: ``quad`` (1), ``d0`` (1),
    ``d1`` (1) clicks, ``last`` (1) marks the last event of the period (its clicks count; a
    ``last`` event with no click is a pure marker). ``i.ready`` is low while an estimate is
    being computed (``Cordic.latency + 4`` cycles per period).
o : Out(stream.Signature(RefEstimate(count_width)))
    ``phase`` ``signed(16)`` turns (``/ 2**16``, ``[-0.5, 0.5)``), ``n0a, n1a, n0b, n1b``
    ``unsigned(count_width)`` (saturating), ``valid_est`` = total clicks ``>= min_counts`` and
    ``(I, Q) != (0, 0)``.
min_counts : In(16)
    RW register: fewest clicks per period for a valid estimate.
count_overflows : Out(32)
    R register: click counts that saturated (one per lost click).
"""
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..regs import Access, Reg
from .common import check_int, reg_members
from .cordic import Cordic, cordic_model

__all__ = ["RefEvent", "ref_estimate_layout", "RefPhaseEstimator", "RefPhaseModel",
           "estimate_from_counts", "PHASE_BITS"]

PHASE_BITS = 16
CORDIC_ITERATIONS = 16


class RefEvent(data.Struct):
    """One reference-slot event (see the module docstring)."""

    quad: 1
    d0: 1
    d1: 1
    last: 1


def ref_estimate_layout(count_width):
    return data.StructLayout({"phase": signed(PHASE_BITS), "n0a": count_width,
                              "n1a": count_width, "n0b": count_width, "n1b": count_width,
                              "valid_est": 1})


def estimate_from_counts(n0a, n1a, n0b, n1b, *, min_counts, count_width=16):
    """Bit-exact estimate from (already saturated) counts: ``(phase, valid_est)``."""
    x, y = n0a - n1a, n0b - n1b
    _, phase = cordic_model([x], [y], width=count_width + 1, phase_bits=PHASE_BITS,
                            iterations=CORDIC_ITERATIONS)
    valid = int(n0a + n1a + n0b + n1b >= min_counts and (x != 0 or y != 0))
    return int(phase[0]), valid


class RefPhaseModel:
    """Bit-exact model of :class:`RefPhaseEstimator`."""

    def __init__(self, *, min_counts=1, count_width=16):
        check_int("count_width", count_width, 2, 24)
        check_int("min_counts", min_counts, 0, (1 << 16) - 1)
        self.min_counts, self.count_width = min_counts, count_width
        self.count_overflows = 0

    def period(self, n0a, n1a, n0b, n1b):
        """Estimate from the raw click counts of one period; return the estimate dict."""
        top = (1 << self.count_width) - 1
        counts = []
        for n in (n0a, n1a, n0b, n1b):
            n = int(n)
            if n < 0:
                raise ValueError(f"click counts must be >= 0, not {n!r}")
            self.count_overflows += max(n - top, 0)
            counts.append(min(n, top))
        phase, valid = estimate_from_counts(*counts, min_counts=self.min_counts,
                                            count_width=self.count_width)
        return dict(phase=phase, n0a=counts[0], n1a=counts[1], n0b=counts[2], n1b=counts[3],
                    valid_est=valid)

    def events(self, events):
        """Run a list of event dicts (``quad, d0, d1, last``); return the estimates."""
        out, c = [], [0, 0, 0, 0]
        for ev in events:
            q = ev["quad"]
            c[2 * q] += ev["d0"]
            c[2 * q + 1] += ev["d1"]
            if ev["last"]:
                out.append(self.period(*c))
                c = [0, 0, 0, 0]
        return out


def events_from_counts(n0a, n1a, n0b, n1b, rng=None):
    """One period's clicks as events (shuffled if ``rng``), ending with a pure marker."""
    ev = ([(0, 1, 0)] * n0a + [(0, 0, 1)] * n1a + [(1, 1, 0)] * n0b + [(1, 0, 1)] * n1b)
    if rng is not None:
        ev = [ev[k] for k in rng.permutation(len(ev))]
    out = [dict(quad=q, d0=a, d1=b, last=0) for q, a, b in ev]
    out.append(dict(quad=0, d0=0, d1=0, last=1))
    return out


class RefPhaseEstimator(wiring.Component):
    """Reference-phase estimator (see the module docstring).

    Parameters
    ----------
    count_width : int
        Width of each click counter, 2..24.
    """

    def __init__(self, *, count_width=16):
        check_int("count_width", count_width, 2, 24)
        self.count_width = count_width
        self.out_layout = ref_estimate_layout(count_width)
        members = {"i": In(stream.Signature(RefEvent)),
                   "o": Out(stream.Signature(self.out_layout))}
        members.update(reg_members(self.registers()))
        super().__init__(members)

    def registers(self):
        return [
            Reg("min_counts", 16, reset=1, doc="Fewest clicks per period for a valid estimate."),
            Reg("count_overflows", 32, Access.R, doc="Clicks lost to saturated counters."),
        ]

    def elaborate(self, platform):
        m = Module()
        cw = self.count_width
        top = (1 << cw) - 1
        m.submodules.cordic = cordic = Cordic(width=cw + 1, phase_bits=PHASE_BITS,
                                              iterations=CORDIC_ITERATIONS)
        cnt = [Signal(cw, name=n) for n in ("n0a", "n1a", "n0b", "n1b")]
        held = [Signal(cw, name=f"h_{n}") for n in ("n0a", "n1a", "n0b", "n1b")]
        busy = Signal()
        start = Signal()
        m.d.comb += self.i.ready.eq(~busy)
        ev = self.i.payload
        nxt = []
        inc = [~ev.quad & ev.d0, ~ev.quad & ev.d1, ev.quad & ev.d0, ev.quad & ev.d1]
        lost = Signal(4)           # clicks lost to a full counter in the last accepted event
        for k, (c, a) in enumerate(zip(cnt, inc, strict=True)):
            sat_ = (c == top) & a
            nxt.append(c + (a & ~sat_))
            m.d.sync += lost[k].eq(self.i.valid & self.i.ready & sat_)
        # one cycle later (keeps the 32-bit add off the counter path)
        m.d.sync += self.count_overflows.eq(self.count_overflows + lost[0] + lost[1] + lost[2]
                                            + lost[3])
        m.d.sync += start.eq(0)
        with m.If(self.i.valid & self.i.ready):
            with m.If(ev.last):
                m.d.sync += [h.eq(v) for h, v in zip(held, nxt, strict=True)]
                m.d.sync += [c.eq(0) for c in cnt]
                m.d.sync += [busy.eq(1), start.eq(1)]
            with m.Else():
                m.d.sync += [c.eq(v) for c, v in zip(cnt, nxt, strict=True)]
        x = Signal(signed(cw + 1))
        y = Signal(signed(cw + 1))
        t01 = Signal(cw + 1)
        t23 = Signal(cw + 1)
        total = Signal(cw + 2)
        start1 = Signal()
        m.d.sync += start1.eq(start)
        with m.If(start):
            m.d.sync += [x.eq(held[0] - held[1]), y.eq(held[2] - held[3]),
                         t01.eq(held[0] + held[1]), t23.eq(held[2] + held[3])]
        with m.If(start1):
            m.d.sync += total.eq(t01 + t23)
        m.d.comb += [cordic.i.valid.eq(start1), cordic.i.payload.x.eq(x),
                     cordic.i.payload.y.eq(y), cordic.o.ready.eq(1)]
        with m.If(cordic.o.valid):
            p = self.o.payload
            m.d.sync += [self.o.valid.eq(1), p.phase.eq(cordic.o.payload.phase),
                         p.n0a.eq(held[0]), p.n1a.eq(held[1]), p.n0b.eq(held[2]),
                         p.n1b.eq(held[3]),
                         p.valid_est.eq((total >= self.min_counts) & ((x != 0) | (y != 0)))]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [self.o.valid.eq(0), busy.eq(0)]
        return m
