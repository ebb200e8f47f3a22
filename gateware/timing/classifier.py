"""Slot clock, slot classifier and BSM coincidence records for the relay.

Slot clock (:class:`SlotClock`)
-------------------------------
Slots have a period of ``period`` tagger units (``T / 38400``, see ``tdc``); the clock edge of
cycle ``k`` after ``start`` lies in slot ``slot_edge`` at phase ``phase_edge``, advanced every
cycle by ``slots_per_cycle = 38400 // period`` slots and ``period_rem = 38400 % period`` units
(exact, no drift). ``phase0`` is the phase of the edge at ``start``: it is the slot offset (the
host moves it for arrival-time compensation). :func:`slot_config` computes the registers.
Registers: ``period`` (RW 24, units, >= 256), ``slots_per_cycle`` (RW 16), ``period_rem`` (RW 24),
``recip`` (RW 24, ``2**24 // period``), ``phase0`` (RW 24), ``start`` (W1P 1).

Slot classifier (:class:`SlotClassifier`)
----------------------------------------
Input ``i: In(stream.Signature(Click))`` from :class:`~.tagger.Tagger`. A click ``fine`` units
before an edge lies in slot ``slot_edge - k`` at phase ``phase_edge - fine + k*period`` with
``k = ceil((fine - phase_edge) / period)`` (``0`` if negative), computed with the reciprocal and
one exact correction. Gates: phase in ``[gate0_lo, gate0_hi)`` is bin 0, else in
``[gate1_lo, gate1_hi)`` bin 1, else the click is out of gate (counted, no record). Channels map
to lanes (wavelengths) and detectors by mode:

=====  ================  ====================  ===============================================
mode   name              lane, detector        pattern bit ``det + dets * bin``
=====  ================  ====================  ===============================================
0      TF (SNS)          ``c >> 1``, ``c & 1``  bit0 D0, bit1 D1 (bits 2, 3: same in gate 1)
1      MDI time-bin      ``c >> 1``, ``c & 1``  bit0 D1|e>, bit1 D2|e>, bit2 D1|l>, bit3 D2|l>
2      MDI polarization  ``c >> 2``, ``c & 3``  bit0 D1H, bit1 D1V, bit2 D2H, bit3 D2V (gate 0)
=====  ================  ====================  ===============================================

Records: clicks of one lane in one slot are OR-ed into one record. A lane's open record is
emitted when a click of any lane arrives in a later slot (or of its own lane in another slot),
lowest lane first, or on ``flush``. A click whose time within its gate differs from the first
click's by more than ``window`` units marks the record ``wide`` (not a coincidence).

Detection record (:class:`RecordWord`, 64 bits; the key-session code decodes it with
:func:`decode_records`):

=========  ====  ===  ========================================================================
field      bits  at   meaning
=========  ====  ===  ========================================================================
valid      1     0    1 in every record (an empty FIFO reads as 0)
slot       32    1    slot index since ``start`` (wraps at 2**32)
lane       5     33   wavelength / detector group
pattern    4     38   detector bits (table above)
cls        3     42   :class:`ClickClass`: 1 single, 2 Psi-, 3 Psi+, 4 multi/invalid
double     1     45   two or more pattern bits (double click)
wide       1     46   a click outside the coincidence window
repeat     1     47   a detector bit clicked twice in the slot
clicks     3     48   clicks merged (saturates at 7)
mode       2     51   mode when emitted
=========  ====  ===  ========================================================================

Classification: one bit is ``SINGLE``. Time-bin: ``D1e+D2l`` (0b1001) or ``D2e+D1l`` (0b0110)
is ``PSI_MINUS``, ``D1e+D1l`` / ``D2e+D2l`` (0b0101 / 0b1010) ``PSI_PLUS``. Polarization:
``D1H+D2V`` / ``D1V+D2H`` (0b1001 / 0b0110) ``PSI_MINUS``, ``D1H+D1V`` / ``D2H+D2V``
(0b0011 / 0b1100) ``PSI_PLUS``. Everything else with two or more bits, and every ``wide``
record, is ``MULTI``. TF records with both detectors are ``MULTI`` with ``double`` set.

Registers of the classifier: ``mode`` (RW 2), ``gate0_lo/hi``, ``gate1_lo/hi`` (RW 24, units;
``lo >= hi`` disables), ``window`` (RW 24, units), ``flush`` (W1P 1), ``records`` (R 64, pop on
read), ``record_level`` (R 16), ``clicks`` (R 32), ``out_of_gate`` (R 32), ``class_single``,
``class_psi_minus``, ``class_psi_plus``, ``class_multi`` (R 32), ``pattern_<p>`` (R 32, records
per pattern ``p`` in 0..15). Wrapping counts. The record FIFO back-pressures the tagger: no
record is dropped. Annotated clicks leave on ``a`` (always ready) for the histograms.

Pipeline (timing): a 9-stage front end (``e = fine - phase_edge - 1``; ``e * recip`` and
``q * period`` as 18x12 partial products; remainder; correction; slot and phase; gate, lane,
detector bit)
that never stalls feeds a ``SKID_DEPTH``-deep skid FIFO; ``i.ready`` is ``inflight <
SKID_DEPTH`` (clicks accepted and not yet taken), a flip-flop compare. The FIFO head (stage X)
is compared with every lane's open record as the lanes will be once the click ahead of it
(stage D) is taken (forwarding), and the result is registered into D. D takes a click unless
records closed earlier are still being emitted (``busy``, a register): taking it copies the
records it closes into an emission set that is emitted lowest lane first, one per cycle (record
stages E1 lane, E2 fields, E3 class and FIFO write). Latency: 13 cycles from an accepted click
to ``a`` when nothing waits; a closed record reaches the record FIFO 3 cycles after its click is
taken. Throughput: one click per cycle plus one cycle per emitted record. Records and
annotated clicks are identical in content and order to :func:`classifier_model` (a sequence
model: latency does not enter it). ``flush`` closes the records open when it is served: clicks
still in the pipeline (at most ``SKID_DEPTH``) come after it.
"""
import dataclasses
import enum

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..regs import Access, Reg
from .tagger import Click, fifo_head
from .tdc import UNITS_PER_CYCLE

__all__ = ["SlotClock", "slot_clock_model", "slot_config", "SlotClassifier", "RecordWord",
           "Annotated", "ClickClass", "ClassifierConfig", "classifier_model", "classify",
           "decode_records", "RECIP_SHIFT", "MODE_TF", "MODE_TIMEBIN", "MODE_POL"]

RECIP_SHIFT = 24
MODE_TF, MODE_TIMEBIN, MODE_POL = 0, 1, 2


class ClickClass(enum.IntEnum):
    NONE = 0
    SINGLE = 1
    PSI_MINUS = 2
    PSI_PLUS = 3
    MULTI = 4


class RecordWord(data.Struct):
    """One detection record (module docstring)."""

    valid: 1
    slot: 32
    lane: 5
    pattern: 4
    cls: 3
    double: 1
    wide: 1
    repeat: 1
    clicks: 3
    mode: 2
    reserved: 11


class Annotated(data.Struct):
    """A click with its slot phase and gate bin (``bin`` 3: out of gate), for histograms."""

    channel: 5
    coarse: 39
    fine: 17
    phase: 24
    bin: 2


RECORD_FIELDS = ("slot", "lane", "pattern", "cls", "double", "wide", "repeat", "clicks", "mode")
RECORD_DTYPE = np.dtype([(f, np.int64) for f in RECORD_FIELDS])


def decode_records(raw):
    """Decode 64-bit record words into a structured array (``RECORD_FIELDS``), valid only."""
    raw = np.asarray(raw, dtype=np.uint64)
    lay = data.Layout.cast(RecordWord)
    valid = (raw & np.uint64(1)) != 0
    out = np.zeros(int(valid.sum()), RECORD_DTYPE)
    for f in RECORD_FIELDS:
        out[f] = ((raw[valid] >> np.uint64(lay[f].offset))
                  & np.uint64((1 << lay[f].width) - 1)).astype(np.int64)
    return out


def slot_config(period_units, phase0=0):
    """Register values of :class:`SlotClock` for a slot period in tagger units."""
    if not isinstance(period_units, (int, np.integer)) or not 256 <= period_units < 1 << 24:
        raise ValueError(f"period_units must be an int in [256, 2**24), not {period_units!r}")
    if not 0 <= phase0 < period_units:
        raise ValueError(f"phase0 must be in [0, period_units), not {phase0!r}")
    return {"period": int(period_units), "slots_per_cycle": UNITS_PER_CYCLE // period_units,
            "period_rem": UNITS_PER_CYCLE % period_units,
            "recip": (1 << RECIP_SHIFT) // period_units, "phase0": int(phase0)}


class SlotClock(wiring.Component):
    """Slot index and phase of every clock edge (module docstring)."""

    period: In(24, init=3840)
    slots_per_cycle: In(16, init=10)
    period_rem: In(24)
    recip: In(24, init=(1 << RECIP_SHIFT) // 3840)
    phase0: In(24)
    start: In(1)
    slot_edge: Out(32)
    phase_edge: Out(24)

    def registers(self):
        return [
            Reg("period", 24, Access.RW, 3840, "Slot period, tagger units (T/38400), >= 256."),
            Reg("slots_per_cycle", 16, Access.RW, 10, "38400 // period."),
            Reg("period_rem", 24, Access.RW, 0, "38400 % period, tagger units."),
            Reg("recip", 24, Access.RW, (1 << RECIP_SHIFT) // 3840, "2**24 // period."),
            Reg("phase0", 24, Access.RW, 0, "Phase of the clock edge at start, tagger units."),
            Reg("start", 1, Access.W1P, 0, "Restart the slot count at slot 0, phase phase0."),
        ]

    def elaborate(self, platform):
        m = Module()
        ph = Signal(25)
        m.d.comb += ph.eq(self.phase_edge + self.period_rem)
        with m.If(self.start):
            m.d.sync += [self.slot_edge.eq(0), self.phase_edge.eq(self.phase0)]
        with m.Elif(ph >= self.period):
            m.d.sync += [self.slot_edge.eq(self.slot_edge + self.slots_per_cycle + 1),
                         self.phase_edge.eq(ph - self.period)]
        with m.Else():
            m.d.sync += [self.slot_edge.eq(self.slot_edge + self.slots_per_cycle),
                         self.phase_edge.eq(ph)]
        return m


def slot_clock_model(cycles, cfg, start_at=0):
    """``(slot_edge, phase_edge)`` per cycle for :class:`SlotClock` started in ``start_at``."""
    slot = np.zeros(cycles, np.int64)
    phase = np.zeros(cycles, np.int64)
    s, p = 0, 0
    for k in range(cycles):
        slot[k], phase[k] = s, p
        if k == start_at:
            s, p = 0, cfg["phase0"]
        else:
            ph = p + cfg["period_rem"]
            if ph >= cfg["period"]:
                s, p = (s + cfg["slots_per_cycle"] + 1) & 0xFFFF_FFFF, ph - cfg["period"]
            else:
                s, p = (s + cfg["slots_per_cycle"]) & 0xFFFF_FFFF, ph
    return slot, phase


def classify(pattern, mode, wide):
    """:class:`ClickClass` of a record (module docstring)."""
    n = bin(pattern).count("1")
    if n == 0:
        return ClickClass.NONE
    if n == 1 and not wide:
        return ClickClass.SINGLE
    if wide or mode == MODE_TF:
        return ClickClass.MULTI
    if pattern in (0b1001, 0b0110):
        return ClickClass.PSI_MINUS
    if (mode == MODE_TIMEBIN and pattern in (0b0101, 0b1010)) or \
            (mode == MODE_POL and pattern in (0b0011, 0b1100)):
        return ClickClass.PSI_PLUS
    return ClickClass.MULTI


@dataclasses.dataclass
class ClassifierConfig:
    """Register values of :class:`SlotClassifier` (and the slot period it is fed)."""

    mode: int = MODE_TF
    gate0: tuple = (0, 1 << 24)
    gate1: tuple = (0, 0)
    window: int = 1 << 23
    period: int = 3840

    def __post_init__(self):
        if self.mode not in (MODE_TF, MODE_TIMEBIN, MODE_POL):
            raise ValueError(f"mode must be 0 (TF), 1 (time-bin) or 2 (polarization), "
                             f"not {self.mode!r}")
        for name in ("gate0", "gate1"):
            lo, hi = getattr(self, name)
            if not (0 <= lo < 1 << 24 and 0 <= hi <= 1 << 24):
                raise ValueError(f"{name} must be a (lo, hi) pair of 24-bit units, "
                                 f"not {getattr(self, name)!r}")


class SlotClassifier(wiring.Component):
    """Slot/bin classification, gates, per-lane records and coincidence counters."""

    SKID_DEPTH = 16

    def __init__(self, channels=16, record_depth=512):
        if not isinstance(channels, int) or not 1 <= channels <= 32:
            raise ValueError(f"channels must be an int in 1..32, not {channels!r}")
        self.channels = channels
        self.lanes = (channels + 1) // 2
        self.record_depth = record_depth
        members = {
            "i": In(stream.Signature(Click)),
            "a": Out(stream.Signature(Annotated, always_ready=True)),
            "period": In(24), "recip": In(24),
            "mode": In(2), "window": In(24), "flush": In(1),
            "records": Out(64), "records_rd": In(1), "record_level": Out(16),
            "clicks": Out(32), "out_of_gate": Out(32),
        }
        for g in ("gate0_lo", "gate0_hi", "gate1_lo", "gate1_hi"):
            members[g] = In(24)
        for c in ("single", "psi_minus", "psi_plus", "multi"):
            members[f"class_{c}"] = Out(32)
        for p in range(16):
            members[f"pattern_{p}"] = Out(32)
        super().__init__(members)

    def registers(self):
        regs = [Reg("mode", 2, Access.RW, 0, "0 TF, 1 MDI time-bin, 2 MDI polarization."),
                Reg("gate0_lo", 24, Access.RW, 0, "Gate 0 start, slot phase units."),
                Reg("gate0_hi", 24, Access.RW, (1 << 24) - 1, "Gate 0 end (exclusive)."),
                Reg("gate1_lo", 24, Access.RW, 0, "Gate 1 start (late bin)."),
                Reg("gate1_hi", 24, Access.RW, 0, "Gate 1 end (exclusive); lo >= hi disables."),
                Reg("window", 24, Access.RW, (1 << 23), "Coincidence window, tagger units."),
                Reg("flush", 1, Access.W1P, 0, "Emit every open record."),
                Reg("records", 64, Access.R, 0,
                    "Head of the records FIFO (RecordWord); word 0 pops."),
                Reg("record_level", 16, Access.R, 0, "Records waiting."),
                Reg("clicks", 32, Access.R, 0, "Clicks classified."),
                Reg("out_of_gate", 32, Access.R, 0, "Clicks outside both gates.")]
        regs += [Reg(f"class_{c}", 32, Access.R, 0, f"Records of class {c}.")
                 for c in ("single", "psi_minus", "psi_plus", "multi")]
        regs += [Reg(f"pattern_{p}", 32, Access.R, 0, f"Records with pattern {p:#06b}.")
                 for p in range(16)]
        return regs

    def elaborate(self, platform):
        m = Module()
        L = self.lanes
        m.submodules.rfifo = rfifo = SyncFIFOBuffered(width=64, depth=self.record_depth)
        head, head_valid = fifo_head(m, rfifo, self.records_rd, "records")
        m.d.comb += [self.records.eq(head), self.record_level.eq(rfifo.level + head_valid)]

        # Front end (p1..p8): slot, phase, gate, lane and detector bit of every click, one
        # click per cycle, never stalled. Clicks are accepted only while the skid FIFO behind
        # it has a place for every click in flight (``inflight < SKID_DEPTH``), so ``i.ready``
        # is a flip-flop compare and the decision stage's stall reaches only the skid FIFO.
        SKID = self.SKID_DEPTH
        inflight = Signal(range(SKID + 1))
        m.d.comb += self.i.ready.eq(inflight < SKID)
        acc = self.i.valid & self.i.ready
        pi = self.i.payload
        pm1, p2m1 = Signal(24), Signal(24)
        m.d.sync += [pm1.eq(self.period - 1), p2m1.eq((self.period << 1) - 1)]

        def stage(name, **fields):
            return {k: Signal(v, name=f"{name}_{k}") for k, v in fields.items()}

        carry = {"v": 1, "ch": 5, "coarse": 39, "fine": 17, "slot_edge": 32, "neg": 1}
        # p1: e = fine - phase_edge - 1 (negative: the click is in the edge's slot).
        s1 = stage("p1", e=range(-(1 << 25), 1 << 25), phn=24, **carry)
        m.d.sync += [s1["v"].eq(acc), s1["ch"].eq(pi.channel), s1["coarse"].eq(pi.coarse),
                     s1["fine"].eq(pi.fine), s1["slot_edge"].eq(pi.slot_edge),
                     s1["e"].eq(pi.fine - pi.phase_edge - 1),
                     s1["phn"].eq(pi.phase_edge - pi.fine)]
        m.d.comb += s1["neg"].eq(s1["e"] < 0)

        def pass_on(dst, src, *names):
            m.d.sync += [dst[k].eq(src[k]) for k in names]

        keep = ("v", "ch", "coarse", "fine", "slot_edge", "neg")
        # p2: q estimate, e[:18] * recip as two 18x12 products.
        s2 = stage("p2", e=range(-(1 << 25), 1 << 25), phn=24, pl=30, ph=30, **carry)
        pass_on(s2, s1, *keep, "e", "phn")
        m.d.sync += [s2["pl"].eq(s1["e"][:18] * self.recip[:12]),
                     s2["ph"].eq(s1["e"][:18] * self.recip[12:24])]
        # p3: q = (e * recip) >> RECIP_SHIFT.
        s3 = stage("p3", e=range(-(1 << 25), 1 << 25), phn=24, prod=42, **carry)
        pass_on(s3, s2, *keep, "e", "phn")
        m.d.sync += s3["prod"].eq(s2["pl"] + (s2["ph"] << 12))
        q3 = s3["prod"][RECIP_SHIFT:RECIP_SHIFT + 18]
        # p4: q * period as two 18x12 products; slot_edge - q - 1.
        s4 = stage("p4", e=range(-(1 << 25), 1 << 25), phn=24, ql=30, qh=30, sa=32, **carry)
        pass_on(s4, s3, *keep, "e", "phn")
        m.d.sync += [s4["ql"].eq(q3 * self.period[:12]), s4["qh"].eq(q3 * self.period[12:24]),
                     s4["sa"].eq(s3["slot_edge"] + ~Cat(q3, Const(0, 14)))]
        # p5: q * period; slot_edge - q - 2.
        s5 = stage("p5", e=range(-(1 << 25), 1 << 25), phn=24, qp=42, sa=32, sb=32, **carry)
        pass_on(s5, s4, *keep, "e", "phn", "sa")
        m.d.sync += [s5["qp"].eq(s4["ql"] + (s4["qh"] << 12)), s5["sb"].eq(s4["sa"] - 1)]
        # p6: remainder r = e - q * period (one correction left).
        s6 = stage("p6", r=range(-(1 << 43), 1 << 43), phn=24, sa=32, sb=32, **carry)
        pass_on(s6, s5, *keep, "phn", "sa", "sb")
        m.d.sync += s6["r"].eq(s5["e"] - s5["qp"])
        # p6b: the correction (r >= period) and both phase candidates, in parallel.
        s6b = stage("p6b", fix=1, pa=24, pb=24, phn=24, sa=32, sb=32, **carry)
        pass_on(s6b, s6, *keep, "phn", "sa", "sb")
        r24 = s6["r"][:24]
        m.d.sync += [s6b["fix"].eq(s6["r"] >= self.period), s6b["pa"].eq(pm1 - r24),
                     s6b["pb"].eq(p2m1 - r24)]
        # p7: slot and phase (a select of registered candidates).
        s7 = stage("p7", slot=32, phase=24, **carry)
        pass_on(s7, s6b, "v", "ch", "coarse", "fine")
        with m.If(s6b["neg"]):
            m.d.sync += [s7["slot"].eq(s6b["slot_edge"]), s7["phase"].eq(s6b["phn"])]
        with m.Elif(s6b["fix"]):
            m.d.sync += [s7["slot"].eq(s6b["sb"]), s7["phase"].eq(s6b["pb"])]
        with m.Else():
            m.d.sync += [s7["slot"].eq(s6b["sa"]), s7["phase"].eq(s6b["pa"])]
        # p8: gate, lane, detector bit.
        phase7, ch7 = s7["phase"], s7["ch"]
        in0 = (phase7 >= self.gate0_lo) & (phase7 < self.gate0_hi)
        in1 = (phase7 >= self.gate1_lo) & (phase7 < self.gate1_hi)
        binv = Signal(2)
        rel = Signal(24)
        with m.If(in0):
            m.d.comb += [binv.eq(0), rel.eq(phase7 - self.gate0_lo)]
        with m.Elif(in1):
            m.d.comb += [binv.eq(1), rel.eq(phase7 - self.gate1_lo)]
        with m.Else():
            m.d.comb += binv.eq(3)
        pol = self.mode == MODE_POL
        lane = Signal(5)
        det = Signal(2)
        m.d.comb += [lane.eq(Mux(pol, ch7 >> 2, ch7 >> 1)), det.eq(Mux(pol, ch7[:2], ch7[0]))]
        bitidx = Signal(3)
        m.d.comb += bitidx.eq(Mux(pol, det + (binv[0] << 2), det + (binv[0] << 1)))
        gated = (binv != 3) & (bitidx < 4)
        skid_layout = data.StructLayout({
            "channel": 5, "coarse": 39, "fine": 17, "phase": 24, "slot": 32, "gated": 1,
            "lane": 5, "lane_oh": L, "bit": 4, "bin": 2, "rel": 24})
        m.submodules.skid = skid = SyncFIFOBuffered(width=skid_layout.size, depth=SKID)
        s8 = Signal(skid_layout)
        v8 = Signal()
        m.d.sync += [v8.eq(s7["v"]), s8.channel.eq(ch7), s8.coarse.eq(s7["coarse"]),
                     s8.fine.eq(s7["fine"]), s8.phase.eq(phase7), s8.slot.eq(s7["slot"]),
                     s8.gated.eq(gated), s8.lane.eq(lane),
                     s8.lane_oh.eq(Mux(gated, Const(1, L) << lane, 0)),
                     s8.bit.eq(Const(1, 4) << bitidx[:2]), s8.bin.eq(Mux(gated, binv, 3)),
                     s8.rel.eq(rel)]
        m.d.comb += [skid.w_data.eq(s8), skid.w_en.eq(v8)]

        # X: the skid FIFO head is compared with every lane's open record, as the lanes will
        # be after the click in D is taken (forwarded), and the result is registered into D.
        x = skid_layout(skid.r_data)
        xv = skid.r_rdy
        o_open = Signal(L)
        o_slot = [Signal(32, name=f"slot_l{i}") for i in range(L)]
        o_pat = [Signal(4, name=f"pat_l{i}") for i in range(L)]
        o_rel = [Signal(24, name=f"rel_l{i}") for i in range(L)]
        o_wide = Signal(L)
        o_rep = Signal(L)
        o_n = [Signal(3, name=f"n_l{i}") for i in range(L)]

        d = Signal(skid_layout)
        dv = Signal()
        d_lane = Signal(L)                    # one-hot lane of the click in D (gated only)
        d_g = Signal()                        # the click in D is valid and in a gate
        d_dr = Signal(range(-(1 << 24), 1 << 24))   # rel - rel of the record it joins
        en = Signal()
        m.d.comb += skid.r_en.eq(en)
        pop = en & skid.r_rdy
        with m.If(acc & ~pop):
            m.d.sync += inflight.eq(inflight + 1)
        with m.Elif(pop & ~acc):
            m.d.sync += inflight.eq(inflight - 1)

        def later_ne(a, b, name):
            diff = Signal(32, name=f"diff_{name}")
            m.d.comb += diff.eq(a - b)
            ne = Signal(name=f"ne_{name}")
            m.d.comb += ne.eq(a != b)
            return ne & ~diff[31], ne

        later_d, ne_d = later_ne(x.slot, d.slot, "d")
        x_lane = x.lane_oh
        cand = Signal(L)                      # valid when the X click is gated (d_g)
        for i in range(L):
            later_o, ne_o = later_ne(x.slot, o_slot[i], f"l{i}")
            fw = d_lane[i]                    # D is valid, gated, in lane i
            later = Mux(fw, later_d, later_o)
            ne = Mux(fw, ne_d, ne_o)
            m.d.comb += cand[i].eq(later | (x_lane[i] & ne))
        # The record the X click joins starts at rel of D's click when D opens its lane
        # (its lane is closed, or open for an earlier slot and closed by D itself).
        d_cand = Signal(L)                    # lanes whose open record the D click closes
        d_opens = dv & (d_lane & (~o_open | d_cand)).any()
        same = dv & (d_lane == x_lane)
        rel_lane = Signal(24)
        m.d.comb += rel_lane.eq(Cat(*o_rel).word_select(x.lane, 24))
        with m.If(en):
            m.d.sync += [dv.eq(xv), d.eq(x), d_lane.eq(Mux(xv, x_lane, 0)), d_cand.eq(cand),
                         d_g.eq(xv & x.gated),
                         d_dr.eq(Mux(same & d_opens, x.rel - d.rel, x.rel - rel_lane))]

        # D: take the click unless records closed earlier are still being emitted (``busy``,
        # a register). Taking it closes the open lanes it makes stale: their records are copied
        # (b_*) into the emission set ``bm``, emitted lowest lane first, one per cycle. A flush
        # closes every open lane the same way.
        flush_req = Signal()
        busy = Signal()
        bm = Signal(L)
        b_slot = [Signal(32, name=f"b_slot_l{i}") for i in range(L)]
        b_pat = [Signal(4, name=f"b_pat_l{i}") for i in range(L)]
        b_n = [Signal(3, name=f"b_n_l{i}") for i in range(L)]
        b_wide, b_rep = Signal(L), Signal(L)
        take = dv & ~busy & ~flush_req
        fl = flush_req & ~busy
        m.d.comb += en.eq(~dv | take)
        closes = Signal(L)
        m.d.comb += closes.eq(Mux(take & d_g, o_open & d_cand, 0) | Mux(fl, o_open, 0))
        with m.If(self.flush):
            m.d.sync += flush_req.eq(1)
        with m.Elif(fl):
            m.d.sync += flush_req.eq(0)
        credits = Signal(range(self.record_depth + 1), init=self.record_depth)
        emit = busy & (credits != 0)
        first = Signal(L)
        m.d.comb += first.eq(bm & ~(bm - 1))
        more = (bm & (bm - 1)).any()
        with m.If(take):
            m.d.sync += busy.eq(d_g & (o_open & d_cand).any())
        with m.Elif(fl):
            m.d.sync += busy.eq(o_open.any())
        with m.Elif(emit):
            m.d.sync += busy.eq(more)
        m.d.sync += bm.eq((bm & ~Mux(emit, first, 0)) | closes)
        for i in range(L):
            with m.If(closes[i]):
                m.d.sync += [b_slot[i].eq(o_slot[i]), b_pat[i].eq(o_pat[i]), b_n[i].eq(o_n[i]),
                             b_wide[i].eq(o_wide[i]), b_rep[i].eq(o_rep[i]),
                             o_open[i].eq(0)]

        # Record pipeline: e1 (lane chosen), e2 (fields), e3 (class, into the FIFO).
        e1v, e1sel = Signal(), Signal(L)
        m.d.sync += [e1v.eq(emit), e1sel.eq(first)]
        e2v = Signal()
        e2 = {k: Signal(w, name=f"e2_{k}") for k, w in
              (("slot", 32), ("lane", 5), ("pat", 4), ("wide", 1), ("rep", 1), ("n", 3))}
        m.d.sync += e2v.eq(e1v)

        def pick(sigs, width):
            acc_ = Const(0, width)
            for i, s in enumerate(sigs):
                acc_ = acc_ | Mux(e1sel[i], s, 0)
            return acc_

        lane_idx = Const(0, 5)
        for i in range(L):
            lane_idx = lane_idx | Mux(e1sel[i], i, 0)
        m.d.sync += [e2["slot"].eq(pick(b_slot, 32)), e2["lane"].eq(lane_idx),
                     e2["pat"].eq(pick(b_pat, 4)), e2["wide"].eq((e1sel & b_wide).any()),
                     e2["rep"].eq((e1sel & b_rep).any()), e2["n"].eq(pick(b_n, 3))]
        pat, wide_r = e2["pat"], e2["wide"]
        cls = Signal(3)
        npat = Signal(3)
        m.d.comb += npat.eq(pat[0] + pat[1] + pat[2] + pat[3])
        with m.If(npat == 0):
            m.d.comb += cls.eq(ClickClass.NONE)
        with m.Elif((npat == 1) & ~wide_r):
            m.d.comb += cls.eq(ClickClass.SINGLE)
        with m.Elif(wide_r | (self.mode == MODE_TF)):
            m.d.comb += cls.eq(ClickClass.MULTI)
        with m.Elif((pat == 0b1001) | (pat == 0b0110)):
            m.d.comb += cls.eq(ClickClass.PSI_MINUS)
        with m.Elif(((self.mode == MODE_TIMEBIN) & ((pat == 0b0101) | (pat == 0b1010)))
                    | (pol & ((pat == 0b0011) | (pat == 0b1100)))):
            m.d.comb += cls.eq(ClickClass.PSI_PLUS)
        with m.Else():
            m.d.comb += cls.eq(ClickClass.MULTI)
        rec = Signal(RecordWord)
        m.d.comb += [rec.valid.eq(1), rec.slot.eq(e2["slot"]), rec.lane.eq(e2["lane"]),
                     rec.pattern.eq(pat), rec.cls.eq(cls), rec.double.eq(npat >= 2),
                     rec.wide.eq(wide_r), rec.repeat.eq(e2["rep"]), rec.clicks.eq(e2["n"]),
                     rec.mode.eq(self.mode)]
        e3v = Signal()
        cls_q, pat_q = Signal(3), Signal(4)
        m.d.sync += [e3v.eq(e2v), rfifo.w_data.eq(rec), cls_q.eq(cls), pat_q.eq(pat)]
        m.d.comb += rfifo.w_en.eq(e3v)
        # Credits: FIFO places not yet promised to an emitted record; a read returns one a
        # cycle later.
        rd_q = Signal()
        m.d.sync += rd_q.eq(rfifo.r_en & rfifo.r_rdy)
        with m.If(emit & ~rd_q):
            m.d.sync += credits.eq(credits - 1)
        with m.Elif(rd_q & ~emit):
            m.d.sync += credits.eq(credits + 1)
        with m.If(e3v):
            for ci, cname in ((ClickClass.SINGLE, "single"), (ClickClass.PSI_MINUS, "psi_minus"),
                              (ClickClass.PSI_PLUS, "psi_plus"), (ClickClass.MULTI, "multi")):
                cnt = getattr(self, f"class_{cname}")
                with m.If(cls_q == ci):
                    m.d.sync += cnt.eq(cnt + 1)
            for p in range(16):
                cnt = getattr(self, f"pattern_{p}")
                with m.If(pat_q == p):
                    m.d.sync += cnt.eq(cnt + 1)

        # Take the D click: join or open its lane's record; annotate it (registered).
        dr = d_dr
        wide_new = (dr > self.window) | (dr < -self.window)
        for i in range(L):
            with m.If(take & d_lane[i]):
                with m.If(o_open[i] & ~d_cand[i]):
                    m.d.sync += [o_pat[i].eq(o_pat[i] | d.bit),
                                 o_n[i].eq(Mux(o_n[i] == 7, 7, o_n[i] + 1))]
                    with m.If(wide_new):
                        m.d.sync += o_wide[i].eq(1)
                    with m.If((o_pat[i] & d.bit).any()):
                        m.d.sync += o_rep[i].eq(1)
                with m.Else():
                    m.d.sync += [o_open[i].eq(1), o_slot[i].eq(d.slot), o_pat[i].eq(d.bit),
                                 o_rel[i].eq(d.rel), o_wide[i].eq(0), o_rep[i].eq(0),
                                 o_n[i].eq(1)]
        av = Signal()
        m.d.sync += [av.eq(take), self.a.payload.channel.eq(d.channel),
                     self.a.payload.coarse.eq(d.coarse), self.a.payload.fine.eq(d.fine),
                     self.a.payload.phase.eq(d.phase), self.a.payload.bin.eq(d.bin)]
        m.d.comb += self.a.valid.eq(av)
        with m.If(av):
            m.d.sync += self.clicks.eq(self.clicks + 1)
            with m.If(self.a.payload.bin == 3):
                m.d.sync += self.out_of_gate.eq(self.out_of_gate + 1)
        return m


def classifier_model(clicks, cfg, flush_at_end=True):
    """Sequence model of :class:`SlotClassifier`.

    ``clicks``: iterable of dicts with ``channel, fine, coarse, slot_edge, phase_edge``;
    ``cfg``: :class:`ClassifierConfig` (``period`` the slot period). Returns ``(records,
    annotated, counters)``: record dicts in emission order (``RECORD_FIELDS``), annotated dicts
    (``channel, coarse, fine, phase, bin``) and a dict of final counter values.
    """
    P = cfg.period
    recip = (1 << RECIP_SHIFT) // P
    lanes = {}
    records, annotated = [], []
    cnt = {"clicks": 0, "out_of_gate": 0, **{f"class_{c}": 0 for c in
                                             ("single", "psi_minus", "psi_plus", "multi")},
           **{f"pattern_{p}": 0 for p in range(16)}}
    names = {ClickClass.SINGLE: "single", ClickClass.PSI_MINUS: "psi_minus",
             ClickClass.PSI_PLUS: "psi_plus", ClickClass.MULTI: "multi"}

    def emit(lane):
        r = lanes.pop(lane)
        cls = classify(r["pattern"], cfg.mode, r["wide"])
        records.append({"slot": r["slot"], "lane": lane, "pattern": r["pattern"],
                        "cls": int(cls), "double": int(bin(r["pattern"]).count("1") >= 2),
                        "wide": r["wide"], "repeat": r["repeat"], "clicks": r["n"],
                        "mode": cfg.mode})
        if cls in names:
            cnt[f"class_{names[cls]}"] += 1
        cnt[f"pattern_{r['pattern']}"] += 1

    for c in clicks:
        d = c["fine"] - c["phase_edge"]
        if d <= 0:
            slot, phase = c["slot_edge"], c["phase_edge"] - c["fine"]
        else:
            e = d - 1
            q = ((e & 0x3FFFF) * recip) >> RECIP_SHIFT
            r = e - (q & 0x3FFFF) * P
            fix = r >= P
            slot = (c["slot_edge"] - (q + 1 + fix)) & 0xFFFF_FFFF
            phase = (P - 1 - (r - P if fix else r)) & 0xFFFFFF
        lo0, hi0 = cfg.gate0
        lo1, hi1 = cfg.gate1
        if lo0 <= phase < hi0:
            b, rel = 0, phase - lo0
        elif lo1 <= phase < hi1:
            b, rel = 1, phase - lo1
        else:
            b, rel = 3, 0
        if cfg.mode == MODE_POL:
            lane, idx = c["channel"] >> 2, (c["channel"] & 3) + 4 * (b & 1)
        else:
            lane, idx = c["channel"] >> 1, (c["channel"] & 1) + 2 * (b & 1)
        gated = b != 3 and idx < 4
        if gated:
            for lz in sorted(lanes):
                diff = (slot - lanes[lz]["slot"]) & 0xFFFF_FFFF
                if diff != 0 and (diff < 1 << 31 or lz == lane):
                    emit(lz)
        annotated.append({"channel": c["channel"], "coarse": c["coarse"], "fine": c["fine"],
                          "phase": phase, "bin": b if gated else 3})
        cnt["clicks"] += 1
        if not gated:
            cnt["out_of_gate"] += 1
            continue
        bit = 1 << idx
        if lane in lanes:
            r = lanes[lane]
            if abs(rel - r["rel"]) > cfg.window:
                r["wide"] = 1
            if r["pattern"] & bit:
                r["repeat"] = 1
            r["pattern"] |= bit
            r["n"] = min(r["n"] + 1, 7)
        else:
            lanes[lane] = {"slot": slot, "pattern": bit, "rel": rel, "wide": 0, "repeat": 0,
                           "n": 1}
    if flush_at_end:
        for lz in sorted(lanes):
            emit(lz)
    return records, annotated, cnt
