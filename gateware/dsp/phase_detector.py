"""OPLL phase detector: NCO, I/Q demodulator, decimating low-pass, CORDIC, multi-turn unwrapper.

The beat note ``x[n] = A cos(2 pi f_IF n / f_s + phi[n])`` (ADC samples) is mixed with the NCO
at ``f_IF`` (``ftw / 2**32`` cycles per sample), low-passed and decimated by ``R = 2**decim_log2``
(integrate-and-dump: a sinc response whose nulls at multiples of ``f_s / R`` remove the
``2 f_IF`` image when ``R * 2 f_IF / f_s`` is an integer), converted to phase and magnitude by a
CORDIC, and unwrapped into a multi-turn phase ``phi`` (turns, relative to the NCO).

Formats
-------
* input ``i``: ``signed(adc_width)`` (``adc_width <= 17``), one ADC sample per transfer.
* NCO: 32-bit phase accumulator, ``ftw`` register (RW, 32 bits, unsigned); a 1024-entry
  cosine table of ``signed(18)`` values ``round((2**17 - 1) cos(2 pi k / 1024))`` addressed by
  the top 10 phase bits (one DP16KD block RAM with output registers, two read ports: cos and
  sin; :func:`.common.rom2x18`).
* mixer: ``I += x cos``, ``Q -= x sin`` (18x18 products, MULT18X18D).
* decimator output to the CORDIC: ``sat((sum) >> (decim_log2 + 16), adc_width + 1)``: the I/Q
  amplitude is ``A / 2`` in ADC LSB (times 2 for the shift by 16 instead of 17).
* output ``o``: ``{phase: signed(16 + turn_bits), mag: unsigned(adc_width + 2)}``, ``phase`` in
  turns with 16 fractional bits (Q(turn_bits).16), range ``+-2**(turn_bits - 1)`` turns;
  ``mag`` in ADC LSB times ``K ~= 1.6468`` (CORDIC gain) over 2.

Unwrapping: each new wrapped phase ``p`` adds ``wrap16(p - p_prev)`` to the multi-turn phase, so
phase steps below half a turn per output sample are tracked. Leaving the multi-turn range wraps
the phase and increments ``turn_overflows``. A ``clear_turns`` pulse removes the whole turns
(keeps the fractional turn) before the next output: used on relock so that the loop does not
unwind cycle slips.

Registers: ``ftw`` (RW 32), ``clear_turns`` (W1P 1), ``turn_overflows`` (R 32), ``overruns``
(R 32: outputs overwritten because ``o`` was not ready).

Timing: ``i.ready`` is always 1 (one ADC sample per cycle at most); one output every ``R`` input
samples, ``9 + cordic.latency`` cycles after the last sample of its block.
"""
import numpy as np
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..regs import Access, Reg
from .common import check_int, mult18, reg_members, rom2x18, sat
from .cordic import Cordic, cordic_model

__all__ = ["PhaseDetector", "PhaseDetectorModel", "COS_TABLE", "TABLE_BITS", "PHASE_FRAC"]

TABLE_BITS = 10
PHASE_FRAC = 16
CORDIC_ITERATIONS = 16
#: The NCO's cosine table (signed 18-bit).
COS_TABLE = np.round((2 ** 17 - 1) * np.cos(2 * np.pi * np.arange(1 << TABLE_BITS)
                                             / (1 << TABLE_BITS))).astype(np.int64)


def _check(adc_width, decim_log2, turn_bits):
    check_int("adc_width", adc_width, 4, 17)
    check_int("decim_log2", decim_log2, 0, 16)
    check_int("turn_bits", turn_bits, 1, 16)


class PhaseDetectorModel:
    """Bit-exact model of :class:`PhaseDetector` (outputs in the order the block emits them)."""

    def __init__(self, *, ftw, adc_width=14, decim_log2=5, turn_bits=12):
        _check(adc_width, decim_log2, turn_bits)
        check_int("ftw", ftw, 0, (1 << 32) - 1)
        self.ftw, self.adc_width, self.decim_log2, self.turn_bits = \
            ftw, adc_width, decim_log2, turn_bits
        self.nco = 0
        self.acc_i = self.acc_q = 0
        self.count = 0
        self.prev = 0
        self.turns = 0
        self.turn_overflows = 0
        self._clear = False

    def clear_turns(self):
        """Model a ``clear_turns`` pulse (applies before the next output)."""
        self._clear = True

    def feed(self, x):
        """Feed ADC samples; return ``(phase, mag)`` arrays of the outputs they complete."""
        x = np.asarray(x, np.int64)
        n = len(x)
        k = np.arange(n, dtype=np.int64)
        ph = (self.nco + self.ftw * k) & 0xFFFF_FFFF
        self.nco = int((self.nco + self.ftw * n) & 0xFFFF_FFFF)
        addr = ph >> (32 - TABLE_BITS)
        c = COS_TABLE[addr]
        s = COS_TABLE[(addr - (1 << (TABLE_BITS - 2))) & ((1 << TABLE_BITS) - 1)]
        pi, pq = x * c, -(x * s)
        r = 1 << self.decim_log2
        # prepend the partial block
        first = r - self.count
        ii, qq = [], []
        if n < first:
            self.acc_i += int(pi.sum())
            self.acc_q += int(pq.sum())
            self.count += n
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        ii.append(self.acc_i + int(pi[:first].sum()))
        qq.append(self.acc_q + int(pq[:first].sum()))
        nb = (n - first) // r
        if nb:
            ii.extend(pi[first:first + nb * r].reshape(nb, r).sum(axis=1).tolist())
            qq.extend(pq[first:first + nb * r].reshape(nb, r).sum(axis=1).tolist())
        rest = first + nb * r
        self.acc_i, self.acc_q = int(pi[rest:].sum()), int(pq[rest:].sum())
        self.count = n - rest
        cw = self.adc_width + 1
        hi, lo = (1 << (cw - 1)) - 1, -(1 << (cw - 1))
        shift = self.decim_log2 + 16
        iv = np.clip(np.array(ii, np.int64) >> shift, lo, hi)
        qv = np.clip(np.array(qq, np.int64) >> shift, lo, hi)
        mag, phase = cordic_model(iv, qv, width=cw, phase_bits=PHASE_FRAC,
                                  iterations=CORDIC_ITERATIONS)
        out = np.zeros(len(phase), np.int64)
        tw = PHASE_FRAC + self.turn_bits
        top = 1 << (tw - 1)
        for j, p in enumerate(phase.tolist()):
            if self._clear:
                self.turns = ((self.turns + (1 << 15)) & 0xFFFF) - (1 << 15)
                self._clear = False
            d = ((p - self.prev + (1 << 15)) & 0xFFFF) - (1 << 15)
            t = self.turns + d
            if not -top <= t < top:
                self.turn_overflows += 1
                t = ((t + top) & ((1 << tw) - 1)) - top
            self.turns = t
            self.prev = p
            out[j] = t
        return out, mag


class PhaseDetector(wiring.Component):
    """NCO + I/Q demodulator + decimator + CORDIC + unwrapper (see the module docstring).

    Parameters
    ----------
    adc_width : int
        ADC sample width, 4..17.
    decim_log2 : int
        Decimation ``R = 2**decim_log2``, 0..16.
    turn_bits : int
        Whole-turn bits of the unwrapped phase, 1..16.
    dsp_primitive : bool
        Mixer products in ``MULT18X18D`` instances (synthesis) rather than behavioural.

    Members
    -------
    i : In(stream.Signature(signed(adc_width)))
    o : Out(stream.Signature({phase: signed(16 + turn_bits), mag: unsigned(adc_width + 2)}))
    ftw, clear_turns, turn_overflows, overruns : register members (see :meth:`registers`).
    """

    def __init__(self, *, adc_width=14, decim_log2=5, turn_bits=12, dsp_primitive=False):
        _check(adc_width, decim_log2, turn_bits)
        self.adc_width, self.decim_log2, self.turn_bits = adc_width, decim_log2, turn_bits
        self.dsp_primitive = dsp_primitive
        self.out_layout = data.StructLayout({"phase": signed(PHASE_FRAC + turn_bits),
                                             "mag": adc_width + 2})
        members = {"i": In(stream.Signature(signed(adc_width))),
                   "o": Out(stream.Signature(self.out_layout))}
        members.update(reg_members(self.registers()))
        super().__init__(members)

    def registers(self):
        return [
            Reg("ftw", 32, doc="NCO frequency tuning word: f_IF = ftw / 2**32 * f_sample."),
            Reg("clear_turns", 1, Access.W1P, doc="Write 1: drop whole turns of the phase."),
            Reg("turn_overflows", 32, Access.R, doc="Unwrapped phase left its range (wraps)."),
            Reg("overruns", 32, Access.R, doc="Outputs lost because o was not ready."),
        ]

    def elaborate(self, platform):
        m = Module()
        aw = self.adc_width
        cw = aw + 1
        r_log2 = self.decim_log2
        m.submodules.cordic = cordic = Cordic(width=cw, phase_bits=PHASE_FRAC,
                                              iterations=CORDIC_ITERATIONS)
        m.d.comb += [self.i.ready.eq(1), cordic.o.ready.eq(1)]

        # Free-running pipeline, valid bits v1..v4 track the samples:
        # t0 address (NCO phase), t2 table data (ROM with output register), t4 products.
        nco = Signal(32)
        addr = nco[32 - TABLE_BITS:]
        take = self.i.valid
        cos_d, sin_d = rom2x18(m, COS_TABLE, addr, addr - (1 << (TABLE_BITS - 2)),
                               primitive=self.dsp_primitive, name="table")
        x0 = Signal(signed(aw))
        x1 = Signal(signed(aw))
        v = [Signal(name=f"v{k}") for k in range(1, 5)]
        m.d.sync += [x0.eq(self.i.payload), x1.eq(x0), v[0].eq(take), v[1].eq(v[0]),
                     v[2].eq(v[1]), v[3].eq(v[2])]
        with m.If(take):
            m.d.sync += nco.eq(nco + self.ftw)
        pw = 36
        pi = mult18(m, x1, cos_d, primitive=self.dsp_primitive, name="mix_i")
        pq = mult18(m, x1, sin_d, primitive=self.dsp_primitive, name="mix_q")
        aw_acc = pw + r_log2 + 1
        acc_i = Signal(signed(aw_acc))
        acc_q = Signal(signed(aw_acc))
        cnt = Signal(max(r_log2, 1))
        dump = Signal()
        si = Signal(signed(aw_acc))
        sq = Signal(signed(aw_acc))
        m.d.sync += dump.eq(0)
        with m.If(v[3]):
            last = (cnt == (1 << r_log2) - 1) if r_log2 else 1
            with m.If(last):
                m.d.sync += [si.eq(acc_i + pi), sq.eq(acc_q - pq), acc_i.eq(0), acc_q.eq(0),
                             cnt.eq(0), dump.eq(1)]
            with m.Else():
                m.d.sync += [acc_i.eq(acc_i + pi), acc_q.eq(acc_q - pq), cnt.eq(cnt + 1)]
        shift = r_log2 + 16
        cx = Signal(signed(cw))
        cy = Signal(signed(cw))
        cv = Signal()
        m.d.sync += [cx.eq(sat(si >> shift, cw)), cy.eq(sat(sq >> shift, cw)), cv.eq(dump)]
        m.d.comb += [cordic.i.valid.eq(cv), cordic.i.payload.x.eq(cx),
                     cordic.i.payload.y.eq(cy)]

        # Unwrapper.
        tw = PHASE_FRAC + self.turn_bits
        prev = Signal(signed(PHASE_FRAC))
        turns = Signal(signed(tw))
        pending = Signal()
        with m.If(self.clear_turns):
            m.d.sync += pending.eq(1)
        # U1: phase step since the previous output
        d = Signal(signed(PHASE_FRAC))
        mag = Signal(self.adc_width + 2)
        u1 = Signal()
        m.d.sync += u1.eq(cordic.o.valid)
        with m.If(cordic.o.valid):
            p = cordic.o.payload.phase
            m.d.sync += [d.eq((p - prev)[:PHASE_FRAC].as_signed()), prev.eq(p),
                         mag.eq(cordic.o.payload.mag)]
        # U2: accumulate (dropping whole turns first after a clear_turns pulse)
        base = Signal(signed(tw))
        m.d.comb += base.eq(turns)
        with m.If(pending):
            m.d.comb += base.eq(turns[:PHASE_FRAC].as_signed())
        t = Signal(signed(tw + 1))
        m.d.comb += t.eq(base + d)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(u1):
            m.d.sync += [turns.eq(t[:tw].as_signed()), pending.eq(self.clear_turns),
                         self.o.valid.eq(1), self.o.payload.phase.eq(t[:tw].as_signed()),
                         self.o.payload.mag.eq(mag)]
            with m.If(t[tw] != t[tw - 1]):
                m.d.sync += self.turn_overflows.eq(self.turn_overflows + 1)
            with m.If(self.o.valid & ~self.o.ready):
                m.d.sync += self.overruns.eq(self.overruns + 1)
        return m
