"""Keyed random setting generator for SNS-TF-QKD and four-intensity MDI-QKD transmitters.

One :class:`PatternGenerator` is one channel (one comb line, one set of modulators) emitting
``L`` slots per clock (L = 1, 2, 4, 8) so that a DDR or SERDES gearbox can drive the modulators
faster than the fabric clock. A node instantiates one per channel.

Slot numbering, frames and the IV rule
--------------------------------------
Slot ``s`` (absolute index; the first slot after a start is ``frame0 * F``) belongs to frame
``k = s // F`` (``F = frame_len`` slots), at offset ``o = s % F``, lane ``j = o % L`` and lane
step ``t = o // L``. Each (frame, lane) has its own Trivium keystream (:mod:`.trivium`) with the
channel key and the IV state integer

    ``iv(k, j) = k  |  j << 48  |  iv_tag << 52``      (k: 48 bits, j: 4 bits, iv_tag: 28 bits)

(bit ``n`` is state bit ``s(94+n)``, see :func:`.trivium.key_to_int`). Slot ``s`` takes keystream
bits ``[t*S, (t+1)*S)`` of that stream as its raw word (first bit = LSB), with
``S = 2*R + 1 + m`` bits (``R`` = ``prob_bits``, ``m`` = ``phase_bits``). So any slot is
regenerated from the key, ``iv_tag`` and the configuration alone, by running at most one frame
of one lane. Every slot consumes its S bits, reference slots included.

Raw word fields: ``u1 = raw[0:R]``, ``u2 = raw[R:2R]``, ``rbit = raw[2R]``,
``ph = raw[2R+1:2R+1+m]`` (unsigned, LSB first).

Setting mapper (exact probabilities)
------------------------------------
Thresholds ``thr0..thr3`` are integers in ``[0, 2**R]``; a comparison ``u < thr`` holds with
probability exactly ``thr / 2**R``.

* SNS (``ctrl.mdi = 0``): Z window iff ``u1 < thr0``. Z window: class ``ZS`` (send mu_z) iff
  ``u2 < thr1``, else ``ZN`` (vacuum). X window: ``X0`` iff ``u2 < thr2``, ``X1`` iff
  ``thr2 <= u2 < thr3``, else ``X2``. So P(ZS) = thr0*thr1 / 4**R,
  P(X1) = (2**R - thr0) * (thr3 - thr2) / 4**R, etc. basis = 0 (Z) / 1 (X); bit = 1 for ZS.
* MDI (``ctrl.mdi = 1``): class ``Z`` iff ``u1 < thr0``, ``Y`` iff ``thr0 <= u1 < thr1``,
  ``X`` iff ``thr1 <= u1 < thr2``, else ``O``: P = thr0, thr1 - thr0, thr2 - thr1,
  2**R - thr2 over 2**R. basis = 0 for Z else 1; bit = rbit (time-bin early/late or H/V in Z,
  +/- in X: the LUTs give the encoding).
* phase_slice = ph (uniform over M = 2**m slices) for quantum slots.

Class codes (``cls``, 3 bits) and the per-class 64-bit counters ``count0..count6``:

====  ==========  ==========  ===========================================================
code  SNS         MDI         meaning
====  ==========  ==========  ===========================================================
0     ZN          Z           SNS: Z window, not sending (vacuum); MDI: signal z (Z basis)
1     ZS          Y           SNS: Z window, sending mu_z;          MDI: decoy y (X basis)
2     X0          X           SNS: X window, mu_0 = 0;             MDI: decoy x (X basis)
3     X1          O           SNS: X window, mu_1;                 MDI: vacuum o (X basis)
4     X2          --          SNS: X window, mu_2
5     REF         REF         reference slot (both)
6     IDLE        IDLE        QRNG mode only: no random word for a quantum slot (underflow)
====  ==========  ==========  ===========================================================

Reference scheduler
-------------------
With ``n_r > 0`` each frame is cut, from its first slot, into periods of ``n_q`` quantum slots
followed by ``n_r`` reference slots (``o % (n_q + n_r) >= n_q``). Both must be multiples of L.
Reference slot number ``r`` within its block gets ``cls = REF``, basis 1, bit 0 and the known
phase slice ``(ref_phase.start + r * ref_phase.step) % M``.

Lookup tables
-------------
``im_code = IM_LUT[(cls << 1) | bit]`` (16 entries of ``im_bits``) and
``pm_code = PM_LUT[(bit << m) | phase_slice]`` (2M entries of ``pm_bits``), DAC words written by
the host through ``im_lut`` / ``pm_lut`` (address in the upper bits, see :meth:`registers`).

Random source modes
-------------------
* Trivium (``ctrl.qrng = 0``): two Trivium cores per lane alternate frames; while one runs the
  other re-initialises for the frame after next, so the output has no gaps provided
  ``F / L >= init_cycles(S) + 4`` (checked by the host configuration).
* QRNG (``ctrl.qrng = 1``): the host writes one 64-bit word per slot to ``qrng_data`` (low S
  bits used, in slot order); L words make a line in a FIFO of ``qrng_depth`` lines; each clock
  pops one line. With the FIFO empty, the quantum slots of that clock are ``IDLE`` (counted in
  ``count6``); a word written to a full FIFO is dropped and counted in ``qrng_overflow``.

Output stream
-------------
``o: Out(stream.Signature(data.ArrayLayout(slot_layout(...), L), always_ready=True))``:
element ``j`` of the payload is slot ``base + j`` of the clock. Each lane is a ``data.Struct``
(:func:`slot_layout`): ``cls`` (3), ``basis`` (1), ``bit`` (1), ``phase_slice`` (max(m, 1)),
``im_code`` (im_bits), ``pm_code`` (pm_bits). ``valid`` is high for every clock carrying slots;
latency from the random word to ``o`` is 3 cycles; ``ready`` of a Trivium core rises
``init_cycles(S) + 1`` cycles after its load, and the first slots appear about
``init_cycles(S) + 5`` cycles after ``ctrl`` is written. Writing ``ctrl`` restarts the generator
at frame ``frame0`` (``frame`` and ``frame_pos`` give the next slot). Writing ``run = 1``
clears the counters and drops slots still in the pipeline; writing ``run = 0`` stops and lets
the pipeline drain; so every slot counted is emitted and vice versa (the counters lag ``o`` by
one cycle). Change the other registers only while stopped (``ctrl.run = 0``); the derived
frame/block limits are registered one cycle after a write.

Model
-----
:func:`slot_raw_words` (Trivium keystream per slot, numpy) and :func:`map_slots` (mapper,
scheduler and LUTs) give the bit-exact setting of any slot; :data:`SLOT_DTYPE` is the record.
"""
import dataclasses

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..regs import Access, Field, Reg
from .trivium import Trivium, init_cycles, trivium_words

__all__ = ["PatternGenerator", "GeneratorParams", "PatternRegs", "slot_layout", "SLOT_DTYPE",
           "slot_raw_words", "map_slots", "frame_iv", "CLS_ZN", "CLS_ZS", "CLS_X0", "CLS_X1",
           "CLS_X2", "CLS_Z", "CLS_Y", "CLS_X", "CLS_O", "CLS_REF", "CLS_IDLE", "N_CLASSES",
           "CLASS_NAMES"]

CLS_ZN, CLS_ZS, CLS_X0, CLS_X1, CLS_X2 = 0, 1, 2, 3, 4
CLS_Z, CLS_Y, CLS_X, CLS_O = 0, 1, 2, 3
CLS_REF, CLS_IDLE = 5, 6
N_CLASSES = 7
CLASS_NAMES = {
    "sns": ("zn", "zs", "x0", "x1", "x2", "ref", "idle"),
    "mdi": ("z", "y", "x", "o", "-", "ref", "idle"),
}

IV_FRAME_BITS, IV_LANE_BITS, IV_TAG_BITS = 48, 4, 28

#: numpy record of one slot's setting (what :func:`map_slots` and the host return).
SLOT_DTYPE = np.dtype([("slot", "u8"), ("cls", "u1"), ("basis", "u1"), ("bit", "u1"),
                       ("phase_slice", "u1"), ("im_code", "u2"), ("pm_code", "u2")])


def slot_layout(phase_bits=4, im_bits=16, pm_bits=16):
    """Return the ``data.StructLayout`` of one lane of the output stream."""
    return data.StructLayout({
        "cls": 3, "basis": 1, "bit": 1, "phase_slice": max(phase_bits, 1),
        "im_code": im_bits, "pm_code": pm_bits,
    })


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], not {value!r}")


@dataclasses.dataclass(frozen=True)
class GeneratorParams:
    """Elaboration parameters of a channel (must match between gateware and host).

    lanes: 1, 2, 4 or 8; prob_bits R: 16..24 (threshold resolution); phase_bits m: 0..8
    (M = 2**m phase slices); im_bits, pm_bits: 1..16 (DAC word widths); qrng_depth: FIFO lines.
    """

    lanes: int = 1
    prob_bits: int = 16
    phase_bits: int = 4
    im_bits: int = 16
    pm_bits: int = 16
    qrng_depth: int = 16

    def __post_init__(self):
        if self.lanes not in (1, 2, 4, 8):
            raise ValueError(f"lanes must be 1, 2, 4 or 8, not {self.lanes!r}")
        _check_int("prob_bits", self.prob_bits, 16, 24)
        _check_int("phase_bits", self.phase_bits, 0, 8)
        _check_int("im_bits", self.im_bits, 1, 16)
        _check_int("pm_bits", self.pm_bits, 1, 16)
        _check_int("qrng_depth", self.qrng_depth, 2, 4096)

    @property
    def slot_bits(self):
        """S: keystream bits consumed per slot (= Trivium width of each lane core)."""
        return 2 * self.prob_bits + 1 + self.phase_bits

    @property
    def slices(self):
        return 1 << self.phase_bits

    @property
    def min_frame_clocks(self):
        """Smallest ``frame_len / lanes`` for gap-free ping-pong re-keying."""
        return init_cycles(self.slot_bits) + 4


@dataclasses.dataclass(frozen=True)
class PatternRegs:
    """Run-time register values of a channel (validated against ``params`` by :meth:`check`)."""

    mdi: bool = False
    thr: tuple = (0, 0, 0, 0)
    frame_len: int = 65536
    n_q: int = 65536
    n_r: int = 0
    ref_phase_start: int = 0
    ref_phase_step: int = 0
    iv_tag: int = 0
    frame0: int = 0
    im_lut: tuple = (0,) * 16
    pm_lut: tuple = (0,) * 32
    qrng: bool = False

    def check(self, params):
        """Raise ``ValueError`` naming the field when a value does not fit ``params``."""
        L, R = params.lanes, params.prob_bits
        if len(self.thr) != 4:
            raise ValueError(f"thr must have 4 thresholds, not {self.thr!r}")
        for i, t in enumerate(self.thr):
            _check_int(f"thr[{i}]", t, 0, 1 << R)
        t = self.thr
        if self.mdi and not t[0] <= t[1] <= t[2]:
            raise ValueError(f"thr[0] <= thr[1] <= thr[2] must hold for MDI, not {t!r}")
        if not self.mdi and not t[2] <= t[3]:
            raise ValueError(f"thr[2] <= thr[3] must hold for SNS, not {t!r}")
        _check_int("frame_len", self.frame_len, L * params.min_frame_clocks, (1 << 32) - L)
        if self.frame_len % L:
            raise ValueError(f"frame_len must be a multiple of lanes={L}, "
                             f"not {self.frame_len!r}")
        _check_int("n_q", self.n_q, L, (1 << 32) - 1)
        _check_int("n_r", self.n_r, 0, (1 << 32) - 1)
        if self.n_q % L or self.n_r % L:
            raise ValueError(f"n_q and n_r must be multiples of lanes={L}, "
                             f"not {self.n_q!r}, {self.n_r!r}")
        _check_int("ref_phase_start", self.ref_phase_start, 0, params.slices - 1)
        _check_int("ref_phase_step", self.ref_phase_step, 0, params.slices - 1)
        _check_int("iv_tag", self.iv_tag, 0, (1 << IV_TAG_BITS) - 1)
        _check_int("frame0", self.frame0, 0, (1 << IV_FRAME_BITS) - 1)
        if len(self.im_lut) != 16:
            raise ValueError(f"im_lut must have 16 entries, not {len(self.im_lut)}")
        if len(self.pm_lut) != 2 * params.slices:
            raise ValueError(f"pm_lut must have {2 * params.slices} entries, "
                             f"not {len(self.pm_lut)}")
        for i, v in enumerate(self.im_lut):
            _check_int(f"im_lut[{i}]", v, 0, (1 << params.im_bits) - 1)
        for i, v in enumerate(self.pm_lut):
            _check_int(f"pm_lut[{i}]", v, 0, (1 << params.pm_bits) - 1)

    def writes(self, params, key_int=None, run=True):
        """Return the register writes ``[(name, value), ...]`` that configure and start.

        ``ctrl`` comes last (it restarts the generator). The key is included when given.
        """
        self.check(params)
        w = []
        if key_int is not None:
            _check_int("key_int", key_int, 0, (1 << 80) - 1)
            w += [("key_lo", key_int & ((1 << 64) - 1)), ("key_hi", key_int >> 64)]
        w += [("iv_tag", self.iv_tag), ("frame0", self.frame0), ("frame_len", self.frame_len),
              ("n_q", self.n_q), ("n_r", self.n_r),
              ("ref_phase", self.ref_phase_start | self.ref_phase_step << 8)]
        w += [(f"thr{i}", t) for i, t in enumerate(self.thr)]
        w += [("im_lut", a << 16 | v) for a, v in enumerate(self.im_lut)]
        w += [("pm_lut", a << 16 | v) for a, v in enumerate(self.pm_lut)]
        w.append(("ctrl", int(run) | int(self.qrng) << 1 | int(self.mdi) << 2))
        return w


def frame_iv(frame, lane, iv_tag):
    """IV state integer of (frame, lane) (see the module docstring)."""
    return int(frame) | int(lane) << IV_FRAME_BITS | int(iv_tag) << (IV_FRAME_BITS
                                                                     + IV_LANE_BITS)


def slot_raw_words(params, regs, key_int, slots):
    """Return the S-bit raw word (uint64) of each absolute slot index in ``slots``."""
    slots = np.asarray(slots, dtype=np.uint64)
    F, L, S = regs.frame_len, params.lanes, params.slot_bits
    frame = slots // np.uint64(F)
    off = slots % np.uint64(F)
    lane = off % np.uint64(L)
    t = (off // np.uint64(L)).astype(np.int64)
    out = np.zeros(slots.shape, dtype=np.uint64)
    if slots.size == 0:
        return out
    keys = frame * np.uint64(16) + lane
    uniq, inv = np.unique(keys, return_inverse=True)
    ivs = [frame_iv(int(u) >> 4, int(u) & 15, regs.iv_tag) for u in uniq]
    nwords = (int(t.max()) + 1) * S // 64 + 2
    words = trivium_words(key_int, ivs, nwords)
    bit = t * S
    wi = bit >> 6
    sh = (bit & 63).astype(np.uint64)
    lo = words[inv, wi] >> sh
    hi = np.where(sh > 0, words[inv, wi + 1] << ((np.uint64(64) - sh) & np.uint64(63)),
                  np.uint64(0))
    out = (lo | hi) & np.uint64((1 << S) - 1)
    return out


def map_slots(params, regs, raw, slots, idle=None):
    """Map raw words to settings (the mapper, reference scheduler and LUTs).

    ``idle`` (bool array, optional) marks quantum slots that had no random word (QRNG
    underflow); they become ``IDLE``. Returns a :data:`SLOT_DTYPE` array.
    """
    R, m = params.prob_bits, params.phase_bits
    slots = np.asarray(slots, dtype=np.uint64)
    raw = np.asarray(raw, dtype=np.uint64)
    mask = np.uint64((1 << R) - 1)
    u1 = (raw & mask).astype(np.int64)
    u2 = ((raw >> np.uint64(R)) & mask).astype(np.int64)
    rbit = ((raw >> np.uint64(2 * R)) & np.uint64(1)).astype(np.uint8)
    ph = ((raw >> np.uint64(2 * R + 1)) & np.uint64((1 << m) - 1)).astype(np.uint8)
    t0, t1, t2, t3 = regs.thr
    if regs.mdi:
        cls = np.where(u1 < t0, CLS_Z, np.where(u1 < t1, CLS_Y,
                                                np.where(u1 < t2, CLS_X, CLS_O)))
        bit = rbit
    else:
        zwin = u1 < t0
        cls = np.where(zwin, np.where(u2 < t1, CLS_ZS, CLS_ZN),
                       np.where(u2 < t2, CLS_X0, np.where(u2 < t3, CLS_X1, CLS_X2)))
        bit = (cls == CLS_ZS).astype(np.uint8)
    cls = cls.astype(np.uint8)
    basis = (cls >= (1 if regs.mdi else 2)).astype(np.uint8)
    phase = ph
    if regs.n_r:
        period = regs.n_q + regs.n_r
        pos = ((slots % np.uint64(regs.frame_len)) % np.uint64(period)).astype(np.int64)
        ref = pos >= regs.n_q
        r = pos - regs.n_q
        rph = ((regs.ref_phase_start + r * regs.ref_phase_step) % (1 << m)).astype(np.uint8)
        cls = np.where(ref, CLS_REF, cls).astype(np.uint8)
        basis = np.where(ref, 1, basis).astype(np.uint8)
        bit = np.where(ref, 0, bit).astype(np.uint8)
        phase = np.where(ref, rph, phase).astype(np.uint8)
    else:
        ref = np.zeros(slots.shape, dtype=bool)
    if idle is not None:
        idle = np.asarray(idle, dtype=bool) & ~ref
        cls = np.where(idle, CLS_IDLE, cls).astype(np.uint8)
        basis = np.where(idle, 0, basis).astype(np.uint8)
        bit = np.where(idle, 0, bit).astype(np.uint8)
        phase = np.where(idle, 0, phase).astype(np.uint8)
    im = np.asarray(regs.im_lut, dtype=np.uint16)
    pm = np.asarray(regs.pm_lut, dtype=np.uint16)
    out = np.empty(slots.shape, dtype=SLOT_DTYPE)
    out["slot"] = slots
    out["cls"] = cls
    out["basis"] = basis
    out["bit"] = bit
    out["phase_slice"] = phase
    out["im_code"] = im[(cls.astype(np.int64) << 1) | bit]
    out["pm_code"] = pm[(bit.astype(np.int64) << m) | phase]
    return out


class PatternGenerator(wiring.Component):
    """One transmitter channel: random source, setting mapper, scheduler, LUTs, counters.

    See the module docstring for the slot/IV rule, the mapping, class codes and the stream.

    Parameters
    ----------
    params : GeneratorParams

    Members
    -------
    o : Out(stream.Signature(ArrayLayout(slot_layout, lanes), always_ready=True))
        L slot settings per clock.
    <register members> :
        One per entry of :meth:`registers` (``connect_registers`` convention), plus
        ``ctrl_stb``, ``im_lut_stb``, ``pm_lut_stb`` and ``qrng_data_stb``.
    """

    def __init__(self, params=None):
        self.params = params = params or GeneratorParams()
        self.layout = slot_layout(params.phase_bits, params.im_bits, params.pm_bits)
        members = {"o": Out(stream.Signature(data.ArrayLayout(self.layout, params.lanes),
                                             always_ready=True))}
        for reg in self.registers():
            d = Out if reg.access is Access.R else In
            members[reg.attr()] = d(reg.width)
            if reg.name in ("ctrl", "im_lut", "pm_lut", "qrng_data"):
                members[reg.attr() + "_stb"] = In(1)
        super().__init__(members)

    def registers(self):
        """Return this channel's register descriptions (names without the channel prefix)."""
        p = self.params
        R = p.prob_bits
        regs = [
            Reg("ctrl", 3, Access.RW, 0, "Control; any write restarts the generator.",
                fields=(Field("run", 0, 1, "emit slots"),
                        Field("qrng", 1, 1, "1: random words from qrng_data, 0: Trivium"),
                        Field("mdi", 2, 1, "1: four-intensity MDI mapping, 0: SNS"))),
            Reg("key_lo", 64, Access.RW, 0, "Trivium key state bits s1..s64 (bit n = s(n+1))."),
            Reg("key_hi", 16, Access.RW, 0, "Trivium key state bits s65..s80."),
            Reg("iv_tag", IV_TAG_BITS, Access.RW, 0, "IV bits 52..79 (channel/session tag)."),
            Reg("frame0", IV_FRAME_BITS, Access.RW, 0, "First frame index after a start."),
            Reg("frame_len", 32, Access.RW, 65536, "Slots per frame (multiple of lanes)."),
            Reg("n_q", 32, Access.RW, 65536, "Quantum slots per scheduler period."),
            Reg("n_r", 32, Access.RW, 0, "Reference slots per period (0: none)."),
            Reg("ref_phase", 16, Access.RW, 0, "Reference phase slice pattern.",
                fields=(Field("start", 0, 8, "slice of the first reference slot"),
                        Field("step", 8, 8, "slice increment per reference slot"))),
        ]
        regs += [Reg(f"thr{i}", R + 1, Access.RW, 0,
                     f"Threshold {i} in units of 2**-{R} (see mapper table).")
                 for i in range(4)]
        regs += [
            Reg("im_lut", 32, Access.W1P, 0, "Write IM LUT entry (cls << 1 | bit).",
                fields=(Field("data", 0, 16, "DAC word"), Field("addr", 16, 4, "index"))),
            Reg("pm_lut", 32, Access.W1P, 0, "Write PM LUT entry (bit << m | slice).",
                fields=(Field("data", 0, 16, "DAC word"), Field("addr", 16, 9, "index"))),
            Reg("qrng_data", 64, Access.W1P, 0, "One QRNG random word per slot (low S bits)."),
            Reg("status", 2, Access.R, 0, "Status.",
                fields=(Field("running", 0, 1, "emitting slots"),
                        Field("keyed", 1, 1, "current Trivium cores ready"))),
            Reg("qrng_level", 16, Access.R, 0, "QRNG FIFO fill level in lines of L words."),
            Reg("qrng_overflow", 32, Access.R, 0, "QRNG words dropped (FIFO full)."),
            Reg("frame", IV_FRAME_BITS, Access.R, 0, "Frame of the next slot to emit."),
            Reg("frame_pos", 32, Access.R, 0,
                "Offset of the next slot in its frame (slot = frame * frame_len + frame_pos)."),
        ]
        regs += [Reg(f"count{c}", 64, Access.R, 0, f"Slots emitted with class code {c}.")
                 for c in range(N_CLASSES)]
        return regs

    def elaborate(self, platform):
        m = Module()
        p = self.params
        L, R, mb, S = p.lanes, p.prob_bits, p.phase_bits, p.slot_bits

        # ---------------- control
        run = Signal()
        qrng = Signal()
        mdi = Signal()
        start = Signal()
        m.d.comb += start.eq(self.ctrl_stb)
        m.d.sync += [run.eq(Mux(start, self.ctrl[0], run))]
        with m.If(start):
            m.d.sync += [qrng.eq(self.ctrl[1]), mdi.eq(self.ctrl[2])]

        key = Cat(self.key_lo, self.key_hi)

        # ---------------- Trivium cores: two sets (ping-pong) of L lanes
        cores = [[Trivium(S) for _ in range(L)] for _ in range(2)]
        fr = [Signal(IV_FRAME_BITS, name=f"fr{s}") for s in range(2)]
        pend = Signal(2)    # load the set next cycle
        sel = Signal()
        for s in range(2):
            for j, core in enumerate(cores[s]):
                m.submodules[f"triv{s}_{j}"] = core
                m.d.comb += [
                    core.key.eq(key),
                    core.iv.eq(Cat(fr[s], Const(j, IV_LANE_BITS), self.iv_tag)),
                    core.load.eq(pend[s]),
                ]
        m.d.sync += pend.eq(0)
        keyed = Signal()
        m.d.comb += keyed.eq(Mux(sel, cores[1][0].ready & ~pend[1], cores[0][0].ready & ~pend[0]))

        # ---------------- QRNG line assembly and FIFO
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=L * S, depth=p.qrng_depth)
        overflow = Signal(32)
        if L == 1:
            m.d.comb += [fifo.w_data.eq(self.qrng_data[:S]), fifo.w_en.eq(self.qrng_data_stb)]
            with m.If(self.qrng_data_stb & ~fifo.w_rdy):
                m.d.sync += overflow.eq(overflow + 1)
        else:
            line = Signal((L - 1) * S)
            fill = Signal(range(L))
            m.d.comb += fifo.w_data.eq(Cat(line, self.qrng_data[:S]))
            with m.If(self.qrng_data_stb):
                with m.If(fill == L - 1):
                    m.d.comb += fifo.w_en.eq(1)
                    m.d.sync += fill.eq(0)
                    with m.If(~fifo.w_rdy):
                        m.d.sync += overflow.eq(overflow + L)
                with m.Else():
                    m.d.sync += fill.eq(fill + 1)
                    for i in range(L - 1):
                        with m.If(fill == i):
                            m.d.sync += line.word_select(i, S).eq(self.qrng_data[:S])
        m.d.comb += [self.qrng_level.eq(fifo.level), self.qrng_overflow.eq(overflow)]

        # ---------------- stage 0: slot timing, source select
        # Derived limits are registered (one cycle after a register write; the registers are
        # static while running), so no adder sits between the bank and the counters.
        k = L.bit_length() - 1
        frame_last_m1 = Signal(32)
        nq_last_m1 = Signal(32)
        nr_last_m1 = Signal(32)
        nq_one = Signal()
        nr_one = Signal()
        has_ref = Signal()
        m.d.sync += [frame_last_m1.eq((self.frame_len >> k) - 2),
                     nq_last_m1.eq((self.n_q >> k) - 2), nr_last_m1.eq((self.n_r >> k) - 2),
                     nq_one.eq((self.n_q >> k) == 1), nr_one.eq((self.n_r >> k) == 1),
                     has_ref.eq(self.n_r != 0)]
        t_clk = Signal(32)          # clock within frame
        at_last = Signal()          # t_clk is the last clock of the frame
        blk = Signal(32)            # clock within the current quantum or reference block
        blk_end = Signal()          # blk is the last clock of its block
        is_ref = Signal()           # the current block is a reference block
        rph = Signal(max(mb, 1))    # reference phase of lane 0 of this clock
        frame = Signal(IV_FRAME_BITS)
        go = Signal()               # this clock carries slots
        m.d.comb += go.eq(run & ~start & Mux(qrng, 1, keyed))
        have = Signal()
        m.d.comb += have.eq(Mux(qrng, fifo.r_rdy, 1))
        # The pops are written out from registers only (equal to go & ... , shorter logic).
        m.d.comb += fifo.r_en.eq(run & ~start & qrng)
        for s in range(2):
            for core in cores[s]:
                m.d.comb += core.en.eq(run & ~start & ~qrng & (sel == s) & ~pend[s])
        step = self.ref_phase[8:16]

        with m.If(start):
            m.d.sync += [
                fr[0].eq(self.frame0), fr[1].eq(self.frame0 + 1), pend.eq(0b11), sel.eq(0),
                t_clk.eq(0), at_last.eq(0), blk.eq(0), blk_end.eq(nq_one), is_ref.eq(0),
                rph.eq(self.ref_phase[:8]), frame.eq(self.frame0),
            ]
        with m.Elif(go):
            with m.If(at_last):
                m.d.sync += [t_clk.eq(0), at_last.eq(0), blk.eq(0), blk_end.eq(nq_one),
                             is_ref.eq(0), rph.eq(self.ref_phase[:8]), frame.eq(frame + 1)]
                with m.If(~qrng):
                    m.d.sync += sel.eq(~sel)
                    for s in range(2):
                        with m.If(sel == s):
                            m.d.sync += [fr[s].eq(fr[s] + 2), pend[s].eq(1)]
            with m.Else():
                m.d.sync += [t_clk.eq(t_clk + 1), at_last.eq(t_clk == frame_last_m1)]
                with m.If(blk_end & has_ref):
                    m.d.sync += [blk.eq(0), is_ref.eq(~is_ref),
                                 blk_end.eq(Mux(is_ref, nq_one, nr_one))]
                    with m.If(is_ref):
                        m.d.sync += rph.eq(self.ref_phase[:8])
                with m.Else():
                    m.d.sync += [blk.eq(blk + 1),
                                 blk_end.eq(Mux(is_ref, blk == nr_last_m1, blk == nq_last_m1))]
                    with m.If(is_ref):
                        m.d.sync += rph.eq(rph + L * step)
        m.d.comb += [self.frame.eq(frame), self.frame_pos.eq(t_clk << k),
                     self.status.eq(Cat(run, keyed))]

        # ---------------- stage 1: register raw words
        raw1 = Signal(L * S)
        v1, ref1, idle1 = Signal(), Signal(), Signal()
        rph1 = Signal(max(mb, 1))
        triv_raw = [Cat(*[c.z for c in cores[s]]) for s in range(2)]
        m.d.sync += [
            raw1.eq(Mux(qrng, fifo.r_data, Mux(sel, triv_raw[1], triv_raw[0]))),
            v1.eq(go & ~start), ref1.eq(is_ref), idle1.eq(~have), rph1.eq(rph),
        ]

        # ---------------- stage 2: mapper and scheduler
        v2 = Signal()
        lanes2 = Signal(data.ArrayLayout(data.StructLayout({
            "cls": 3, "bit": 1, "phase": max(mb, 1)}), L))
        m.d.sync += v2.eq(v1 & ~start)
        for j in range(L):
            w = raw1.word_select(j, S)
            u1, u2, rbit = w[:R], w[R:2 * R], w[2 * R]
            ph = w[2 * R + 1:2 * R + 1 + mb] if mb else Const(0, 1)
            cls = Signal(3, name=f"cls{j}")
            bit = Signal(name=f"bit{j}")
            phase = Signal(max(mb, 1), name=f"phase{j}")
            t = [getattr(self, f"thr{i}") for i in range(4)]
            with m.If(mdi):
                m.d.comb += [cls.eq(Mux(u1 < t[0], CLS_Z, Mux(u1 < t[1], CLS_Y,
                                                             Mux(u1 < t[2], CLS_X, CLS_O)))),
                             bit.eq(rbit)]
            with m.Else():
                zs = u2 < t[1]
                m.d.comb += [cls.eq(Mux(u1 < t[0], Mux(zs, CLS_ZS, CLS_ZN),
                                        Mux(u2 < t[2], CLS_X0, Mux(u2 < t[3], CLS_X1, CLS_X2)))),
                             bit.eq((u1 < t[0]) & zs)]
            m.d.comb += phase.eq(ph)
            lane = lanes2[j]
            with m.If(ref1):
                m.d.sync += [lane.cls.eq(CLS_REF), lane.bit.eq(0),
                             lane.phase.eq(rph1 + j * step)]
            with m.Elif(idle1):
                m.d.sync += [lane.cls.eq(CLS_IDLE), lane.bit.eq(0), lane.phase.eq(0)]
            with m.Else():
                m.d.sync += [lane.cls.eq(cls), lane.bit.eq(bit), lane.phase.eq(phase)]

        # ---------------- counters
        # The per-clock increment is registered first, so the 64-bit carry chain starts at a
        # flip-flop (counters lag the output by one cycle).
        counts = [Signal(64, name=f"cnt{c}") for c in range(N_CLASSES)]
        for c in range(N_CLASSES):
            inc = Signal(range(L + 1), name=f"inc{c}")
            clear = start & self.ctrl[0]
            m.d.sync += inc.eq(Mux(v2 & ~clear, sum((lanes2[j].cls == c) for j in range(L)), 0))
            with m.If(clear):
                m.d.sync += counts[c].eq(0)
            with m.Else():
                m.d.sync += counts[c].eq(counts[c] + inc)
            m.d.comb += getattr(self, f"count{c}").eq(counts[c])

        # ---------------- stage 3: LUTs
        im_mem = Memory(shape=p.im_bits, depth=16, init=[])
        pm_mem = Memory(shape=p.pm_bits, depth=2 << mb, init=[])
        m.submodules.im_mem = im_mem
        m.submodules.pm_mem = pm_mem
        imw = im_mem.write_port()
        pmw = pm_mem.write_port()
        m.d.comb += [imw.addr.eq(self.im_lut[16:20]), imw.data.eq(self.im_lut[:p.im_bits]),
                     imw.en.eq(self.im_lut_stb),
                     pmw.addr.eq(self.pm_lut[16:17 + mb]), pmw.data.eq(self.pm_lut[:p.pm_bits]),
                     pmw.en.eq(self.pm_lut_stb)]
        out = Signal(data.ArrayLayout(self.layout, L))
        v3 = Signal()
        m.d.sync += v3.eq(v2 & ~(start & self.ctrl[0]))   # a restart drops, a stop drains
        for j in range(L):
            lane = lanes2[j]
            imr = im_mem.read_port(domain="comb")
            pmr = pm_mem.read_port(domain="comb")
            m.d.comb += [imr.addr.eq(Cat(lane.bit, lane.cls)),
                         pmr.addr.eq(Cat(lane.phase[:mb] if mb else Const(0, 0), lane.bit))]
            m.d.sync += [
                out[j].cls.eq(lane.cls),
                out[j].basis.eq(Mux(mdi, lane.cls != 0, lane.cls >= 2) & (lane.cls != CLS_IDLE)),
                out[j].bit.eq(lane.bit),
                out[j].phase_slice.eq(lane.phase),
                out[j].im_code.eq(imr.data),
                out[j].pm_code.eq(pmr.data),
            ]
        m.d.comb += [self.o.payload.eq(out), self.o.valid.eq(v3)]
        return m
