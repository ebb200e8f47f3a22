"""Reference events from the relay's own records: the tap that closes the phase loop on chip.

The transmitters interleave ``n_q`` quantum slots with ``n_r`` reference slots
(:mod:`combkey.gateware.pattern.generator`, "Reference scheduler"); the relay's phase
compensator (:class:`~combkey.gateware.dsp.ref_phase.RefPhaseEstimator` inside
:class:`~combkey.gateware.loops.phase_compensator.PhaseCompensator`) wants one
:class:`~combkey.gateware.dsp.ref_phase.RefEvent` per reference slot that clicked and a marker
at the end of each reference period. :class:`RefTap` makes them from the twin-field records as
they leave the classifier's FIFO (to the host or to the Ethernet stream); it only observes the
records and never holds them back.

Rule (registers, prefix ``reftap`` in the relay)
-----------------------------------------------
* ``enable`` (RW 1): 1 feeds the compensator from the tap instead of the host's ``ref.event``.
* ``lane`` (RW 5): only records of this lane (wavelength) count; only TF-mode records count.
* ``first`` (RW 32): slot index where the first period starts; records before it are ignored.
* ``n_q``, ``n_r`` (RW 32): the transmitters' scheduler; period ``P = n_q + n_r`` (>= 1).
* ``quarter`` (RW 4): ``start`` [1:0], ``step`` [3:2]. Reference slot ``r`` of a period (``r =
  pos - n_q`` for ``pos = (slot - first) mod P >= n_q``) carries the relative reference phase
  ``k * pi/2`` with ``k = (start + r * step) mod 4``: ``quad = k & 1`` and, for ``k >= 2``
  (a phase of pi more), D0 and D1 swap. E.g. Alice ``ref_phase.step = 0`` and Bob
  ``ref_phase.step = M/4`` give ``quarter = 0b0100``.
* Events: a record in a reference slot gives ``(quad, d0, d1, last=0)`` with ``d0 = pattern[0] |
  pattern[2]``, ``d1 = pattern[1] | pattern[3]`` (both gates); the first record at or after the
  end of a period gives one marker ``(0, 0, 0, last=1)`` for that period and for every later
  period that ended without a record, before its own event.
* ``drops`` (R 32): records that qualified while the 16-entry input FIFO was full (not turned
  into events). ``events`` (R 32): events and markers delivered.

Timing: records enter a FIFO (one per cycle); one FIFO entry or marker is handled per cycle
when the compensator is ready. The model :func:`reftap_model` gives the event sequence
(latency does not enter it).
"""
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .dsp.ref_phase import RefEvent
from .regs import Access, Field, Reg
from .timing.classifier import MODE_TF, RecordWord

__all__ = ["RefTap", "reftap_model", "TAP_DEPTH"]

#: Input FIFO depth (records).
TAP_DEPTH = 16


def _event_bits(record, cfg):
    """Return ``(slot, d0, d1)`` of a qualifying record (a ``RecordWord`` dict) or None."""
    if not record["valid"] or record["mode"] != MODE_TF or record["lane"] != cfg["lane"]:
        return None
    p = record["pattern"]
    return record["slot"], (p | p >> 2) & 1, ((p >> 1) | (p >> 3)) & 1


def reftap_model(records, cfg):
    """Events ``(quad, d0, d1, last)`` the tap makes from ``records`` (dicts with the
    :class:`RecordWord` fields) under ``cfg`` (dict of the registers). Nothing is dropped."""
    if not cfg.get("enable", 1):
        return []
    period = cfg["n_q"] + cfg["n_r"]
    start = cfg["first"]
    q0, qs = cfg["quarter"] & 3, (cfg["quarter"] >> 2) & 3
    out = []
    for rec in records:
        e = _event_bits(rec, cfg)
        if e is None:
            continue
        slot, d0, d1 = e
        diff = (slot - start) & 0xFFFFFFFF
        if diff >= 1 << 31:                      # before the first period
            continue
        while diff >= period:
            out.append((0, 0, 0, 1))
            start = (start + period) & 0xFFFFFFFF
            diff -= period
        if diff >= cfg["n_q"]:
            k = (q0 + (diff - cfg["n_q"]) * qs) & 3
            if k >= 2:
                d0, d1 = d1, d0
            out.append((k & 1, d0, d1, 0))
    return out


class RefTap(wiring.Component):
    """Records -> reference events (see the module docstring).

    Members
    -------
    rec : In(64)
        Record word leaving the classifier FIFO this cycle (:class:`RecordWord`).
    rec_valid : In(1)
        ``rec`` was popped this cycle (by either reader).
    ev : Out(stream.Signature(RefEvent))
    enable, lane, first, n_q, n_r, quarter, drops, events
        Register ports.
    """

    def __init__(self):
        super().__init__({
            "rec": In(64), "rec_valid": In(1),
            "ev": Out(stream.Signature(RefEvent)),
            "enable": In(1), "lane": In(5), "first": In(32), "n_q": In(32), "n_r": In(32),
            "quarter": In(4), "drops": Out(32), "events": Out(32),
        })

    @staticmethod
    def registers():
        return [
            Reg("enable", 1, Access.RW, doc="1: the phase compensator takes the tap's events"),
            Reg("lane", 5, Access.RW, doc="lane whose TF records count"),
            Reg("first", 32, Access.RW, doc="slot where the first reference period starts"),
            Reg("n_q", 32, Access.RW, 65536, doc="quantum slots per period (transmitters')"),
            Reg("n_r", 32, Access.RW, 0, doc="reference slots per period (transmitters')"),
            Reg("quarter", 4, Access.RW, doc="relative reference phase in quarter turns",
                fields=(Field("start", 0, 2, "k of reference slot 0"),
                        Field("step", 2, 2, "k added per reference slot"))),
            Reg("drops", 32, Access.R, doc="qualifying records lost to a full tap FIFO"),
            Reg("events", 32, Access.R, doc="events and period markers delivered"),
        ]

    def elaborate(self, platform):
        m = Module()
        rec = RecordWord(self.rec)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=34, depth=TAP_DEPTH)
        p = rec.pattern
        qualifies = (self.enable & self.rec_valid & rec.valid & (rec.mode == MODE_TF)
                     & (rec.lane == self.lane))
        drops = Signal(32)
        events = Signal(32)
        m.d.comb += [self.drops.eq(drops), self.events.eq(events),
                     fifo.w_data.eq(Cat(rec.slot, p[0] | p[2], p[1] | p[3])),
                     fifo.w_en.eq(qualifies)]
        with m.If(qualifies & ~fifo.w_rdy):
            m.d.sync += drops.eq(drops + 1)

        start = Signal(32)
        enabled = Signal()
        period = Signal(32)
        m.d.sync += [period.eq(self.n_q + self.n_r), enabled.eq(self.enable)]
        with m.If(self.enable & ~enabled):               # (re)start at ``first``
            m.d.sync += start.eq(self.first)
        slot = fifo.r_data[:32]
        d0, d1 = fifo.r_data[32], fifo.r_data[33]
        diff = Signal(32)
        m.d.comb += diff.eq(slot - start)
        pos_r = Signal(32)
        m.d.comb += pos_r.eq(diff - self.n_q)
        k = Signal(2)
        m.d.comb += k.eq(self.quarter[:2] + pos_r[:2] * self.quarter[2:4])
        swap = k[1]
        ev = self.ev
        with m.If(ev.valid & ev.ready):
            m.d.sync += [ev.valid.eq(0), events.eq(events + 1)]
        busy = ev.valid & ~ev.ready
        with m.If(fifo.r_rdy & ~busy & enabled):
            with m.If(diff[31]):                          # before the first period: ignore
                m.d.comb += fifo.r_en.eq(1)
            with m.Elif(diff >= period):                  # a period ended: marker, advance
                m.d.sync += [ev.valid.eq(1), ev.payload.eq(Cat(0, 0, 0, 1)),
                             start.eq(start + period)]
            with m.Else():
                m.d.comb += fifo.r_en.eq(1)
                with m.If(diff >= self.n_q):
                    m.d.sync += [ev.valid.eq(1),
                                 ev.payload.eq(Cat(k[0], Mux(swap, d1, d0), Mux(swap, d0, d1),
                                                   0))]
        with m.If(~self.enable):
            m.d.comb += fifo.r_en.eq(1)                   # discard while disabled
        return m
