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
``im_code`` (im_bits), ``pm_code`` (pm_bits). ``valid`` is high for every clock carrying slots.

Timing (all in clock cycles; none of it changes which setting slot ``s`` gets, only when it
appears): a ``ctrl`` write acts 2 cycles after its strobe (``ctrl_stb``); the random word of a
clock reaches ``o`` 6 cycles after it is popped; ``ready`` of a Trivium core rises
``init_cycles(S) + 1`` cycles after its load, and the first slots of a Trivium start appear
``init_cycles(S) + 12`` cycles after the strobe. Writing ``ctrl`` restarts the generator at
frame ``frame0`` (``frame`` and ``frame_pos`` give the next slot to be drawn). Writing
``run = 1`` clears the counters and drops slots still in the pipeline; writing ``run = 0`` stops
and lets the last stage drain; so every slot counted is emitted and vice versa (the counters
lag ``o`` by 2 cycles and always read as a consistent 64-bit value). Change the other registers
only while stopped (``ctrl.run = 0``): the generator works on local copies, taken one cycle
after a write, and on values derived from them one cycle later.

Register access: only ``ctrl`` and the status registers read back. The configuration
registers (``key_lo``, ``key_hi``, ``iv_tag``, ``frame0``, ``frame_len``, ``n_q``, ``n_r``,
``ref_phase``, ``thr0..3``) are write-only (``W1P``: the bank holds the written value, 0 until
written, and the generator copies it; reading them is refused by the host): a readable word
costs about 40 LUT4 of read multiplexer per channel, which a 16-channel transmitter cannot
afford, and the key is not readable at all.

Pipeline (for timing closure at 200 MHz on ECP5): the frame and block positions are count-down
counters whose terminal flags are the registered sign bits of the decrement; ``go`` (a clock
carries slots) is a flip-flop; the Trivium cores take their advance request a cycle ahead,
so their state enables are flip-flops and they need no output buffer; the three source
words (two Trivium sets from their registered outputs, QRNG FIFO) are registered before the
source select; the threshold compares are registered before
the class mapping; frame + 1 and frame + 2 are precomputed; the 64-bit counters are two
32-bit halves with a registered carry.

Model
-----
:func:`slot_raw_words` (Trivium keystream per slot, numpy) and :func:`map_slots` (mapper,
scheduler and LUTs) give the bit-exact setting of any slot; :data:`SLOT_DTYPE` is the record.
"""
import dataclasses

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
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
        One per entry of :meth:`registers` (``connect_registers`` convention), plus a
        ``<name>_stb`` write strobe for ``ctrl`` and every write-only register (only
        ``ctrl_stb``, ``im_lut_stb``, ``pm_lut_stb`` and ``qrng_data_stb`` are used; the
        configuration registers are copied continuously from the bank's held value).
    """

    def __init__(self, params=None):
        self.params = params = params or GeneratorParams()
        self.layout = slot_layout(params.phase_bits, params.im_bits, params.pm_bits)
        members = {"o": Out(stream.Signature(data.ArrayLayout(self.layout, params.lanes),
                                             always_ready=True))}
        for reg in self.registers():
            d = Out if reg.access is Access.R else In
            members[reg.attr()] = d(reg.width)
            if reg.access is Access.W1P or reg.name == "ctrl":
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
            Reg("key_lo", 64, Access.W1P, 0,
                "Trivium key state bits s1..s64 (bit n = s(n+1)); write-only, held."),
            Reg("key_hi", 16, Access.W1P, 0, "Trivium key state bits s65..s80; write-only, held."),
            Reg("iv_tag", IV_TAG_BITS, Access.W1P, 0,
                "IV bits 52..79 (channel/session tag); write-only, held."),
            Reg("frame0", IV_FRAME_BITS, Access.W1P, 0,
                "First frame index after a start; write-only, held."),
            Reg("frame_len", 32, Access.W1P, 0,
                "Slots per frame (multiple of lanes); write-only, held."),
            Reg("n_q", 32, Access.W1P, 0,
                "Quantum slots per scheduler period; write-only, held."),
            Reg("n_r", 32, Access.W1P, 0,
                "Reference slots per period (0: none); write-only, held."),
            Reg("ref_phase", 16, Access.W1P, 0,
                "Reference phase slice pattern; write-only, held.",
                fields=(Field("start", 0, 8, "slice of the first reference slot"),
                        Field("step", 8, 8, "slice increment per reference slot"))),
        ]
        regs += [Reg(f"thr{i}", R + 1, Access.W1P, 0,
                     f"Threshold {i} in units of 2**-{R} (see mapper table); write-only, held.")
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
        # The run-time registers are copied into local flip-flops (`cfg`), and the values
        # derived from them are registered again, so no path runs from the register bank into
        # logic. A ctrl write therefore acts two cycles after its strobe (`start` is a local
        # flip-flop): every restart action keys on it, never on the bank's strobe.
        cfg = {}
        for name in ("key_lo", "key_hi", "iv_tag", "frame0", "frame_len", "n_q", "n_r",
                     "ref_phase", "thr0", "thr1", "thr2", "thr3"):
            cfg[name] = Signal(len(getattr(self, name)), name=f"cfg_{name}")
            m.d.sync += cfg[name].eq(getattr(self, name))
        stb1 = Signal()
        start = Signal()
        ctrl_q = Signal(3)
        run = Signal()
        qrng = Signal()
        mdi = Signal()
        m.d.sync += [stb1.eq(self.ctrl_stb), start.eq(stb1)]
        with m.If(self.ctrl_stb):
            m.d.sync += ctrl_q.eq(self.ctrl)
        with m.If(start):
            m.d.sync += [run.eq(ctrl_q[0]), qrng.eq(ctrl_q[1]), mdi.eq(ctrl_q[2])]
        clear = Signal()        # a start with run = 1: counters cleared, pipeline dropped
        m.d.comb += clear.eq(start & ctrl_q[0])

        key = Cat(cfg["key_lo"], cfg["key_hi"])

        # ---------------- Trivium cores: two sets (ping-pong) of L lanes
        cores = [[Trivium(S) for _ in range(L)] for _ in range(2)]
        fr = [Signal(IV_FRAME_BITS, name=f"fr{s}") for s in range(2)]
        pend = Signal(2)    # load the set (its `load` input)
        sel = Signal()
        for s in range(2):
            for j, core in enumerate(cores[s]):
                m.submodules[f"triv{s}_{j}"] = core
                m.d.comb += [
                    core.key.eq(key),
                    core.iv.eq(Cat(fr[s], Const(j, IV_LANE_BITS), cfg["iv_tag"])),
                    core.load.eq(pend[s]),
                ]
        m.d.sync += pend.eq(0)
        rdy = [cores[s][0].ready & ~pend[s] for s in range(2)]

        # ---------------- QRNG line assembly and FIFO
        # A FIFO of D lines in distributed RAM (asynchronous read at the read pointer; the
        # consumer registers the head). The write enable is a flip-flop decided a cycle ahead
        # from the fill level the FIFO will have then (flags `ge_d` / `ge_dm1`: level >= D,
        # >= D - 1, kept in flip-flops), so no gate sits between the fill level and the RAM's
        # write enable; a line completed while the FIFO will be full is dropped and counted.
        D = p.qrng_depth
        qmem = Memory(shape=L * S, depth=D, init=[])
        m.submodules.qmem = qmem
        qw = qmem.write_port()
        qr = qmem.read_port(domain="comb")
        wp = Signal(range(D))
        rp = Signal(range(D))
        level = Signal(range(D + 1))
        nonempty = Signal()
        ge_d = Signal()
        ge_dm1 = Signal()
        qwe = Signal()
        qwdata = Signal(L * S)
        overflow = Signal(32)
        qd = Signal(S)
        qd_stb = Signal()
        line_done = Signal()
        qpop = Signal()             # a clock of QRNG slots pops a line (set below)
        pop = Signal()
        full_nx = Signal()
        m.d.sync += [qd.eq(self.qrng_data[:S]), qd_stb.eq(self.qrng_data_stb)]
        if L == 1:
            m.d.comb += line_done.eq(qd_stb)
            new_line = qd
        else:
            line = Signal((L - 1) * S)
            fill = Signal(range(L))
            new_line = Cat(line, qd)
            m.d.comb += line_done.eq(qd_stb & (fill == L - 1))
            with m.If(qd_stb):
                with m.If(fill == L - 1):
                    m.d.sync += fill.eq(0)
                with m.Else():
                    m.d.sync += fill.eq(fill + 1)
                    for i in range(L - 1):
                        with m.If(fill == i):
                            m.d.sync += line.word_select(i, S).eq(qd)
        m.d.comb += [
            pop.eq(qpop & nonempty),
            full_nx.eq(Mux(qwe & ~pop, ge_dm1, Mux(pop & ~qwe, 0, ge_d))),
            qw.addr.eq(wp), qw.data.eq(qwdata), qw.en.eq(qwe), qr.addr.eq(rp),
        ]
        m.d.sync += qwe.eq(line_done & ~full_nx)
        with m.If(line_done):
            m.d.sync += qwdata.eq(new_line)
            with m.If(full_nx):
                m.d.sync += overflow.eq(overflow + L)

        def wrap_inc(ptr):
            return Mux(ptr == D - 1, 0, ptr + 1) if D & (D - 1) else ptr + 1
        with m.If(qwe):
            m.d.sync += wp.eq(wrap_inc(wp))
        with m.If(pop):
            m.d.sync += rp.eq(wrap_inc(rp))
        with m.If(qwe & ~pop):
            m.d.sync += [level.eq(level + 1), nonempty.eq(1), ge_d.eq(ge_dm1),
                         ge_dm1.eq(level >= D - 2)]
        with m.Elif(pop & ~qwe):
            m.d.sync += [level.eq(level - 1), nonempty.eq(level >= 2), ge_d.eq(0),
                         ge_dm1.eq(ge_d)]
        m.d.comb += [self.qrng_level.eq(level), self.qrng_overflow.eq(overflow)]

        # ---------------- stage 0: slot timing, source select
        # Frame and block positions are count-down counters whose sign bits are the terminal
        # flags, so no wide compare sits in any path; the reload values are registered from
        # the local register copies. The scheduler's control is a set of flip-flops computed a
        # cycle ahead from flip-flops: `act_reset` (start or frame end), `act_adv` (advance
        # within the frame), `gate` (this clock carries slots). `go` (running and the random
        # source ready) is a flip-flop: within a frame the selected cores sustain one word per
        # clock, so `go` only changes at a start or a frame end, or rises one clock after the
        # selected cores became ready.
        k = L.bit_length() - 1
        fc_m3 = Signal(33)          # frame clocks - 3  (>= 33)
        nq_m2 = Signal(33)          # quantum block clocks - 2 (>= -1); 2**32 - 1 if n_r = 0
        nr_m2 = Signal(33)          # reference block clocks - 2 (>= -1 when n_r > 0)
        frame0_p1 = Signal(IV_FRAME_BITS)
        nr_zero = Signal()          # n_r = 0, registered beside the copies (from the port)
        m.d.sync += nr_zero.eq(self.n_r == 0)
        m.d.sync += [fc_m3.eq((cfg["frame_len"] >> k) - 3),
                     nq_m2.eq(Mux(nr_zero, 0xFFFF_FFFF, (cfg["n_q"] >> k) - 2)),
                     nr_m2.eq((cfg["n_r"] >> k) - 2), frame0_p1.eq(cfg["frame0"] + 1)]
        t_clk = Signal(32)          # clock within frame (for frame_pos)
        fr_rem = Signal(33)         # frame clocks - 3 - t_clk; sign: t_clk >= frame clocks - 2
        at_last = Signal()          # t_clk is the last clock of the frame
        blk_rem = Signal(33)        # block clocks - 2 - clock in block; sign: last clock
        blk_reload = Signal(33)     # blk_rem at the next block switch
        is_ref = Signal()           # the current block is a reference block
        rph = Signal(max(mb, 1))    # reference phase of lane 0 of this clock
        frame = Signal(IV_FRAME_BITS)
        go = Signal()               # running, and the random source is ready
        gate = Signal()             # = go & ~start: this clock carries slots
        act_reset = Signal()        # = start | at_last: frame (re)start
        act_adv = Signal()          # = go & ~start & ~at_last: advance within the frame
        step = cfg["ref_phase"][8:16]
        blk_end = blk_rem[32]

        # `at_last` implies `go` (it is set only while advancing, and `go` falls only at a
        # start, which clears both, or at a frame end).
        at_last_nx = Signal()
        go_nx = Signal()
        m.d.comb += [
            at_last_nx.eq(Mux(act_reset, 0, Mux(act_adv, fr_rem[32], at_last))),
            go_nx.eq(Mux(start, 0, Mux(at_last, run & (qrng | Mux(sel, rdy[0], rdy[1])),
                                       go | (run & (qrng | Mux(sel, rdy[1], rdy[0])))))),
        ]
        act_any = Signal()          # = act_reset | act_adv: the counters' enable
        m.d.sync += [at_last.eq(at_last_nx), go.eq(go_nx), gate.eq(go_nx & ~stb1),
                     act_reset.eq(stb1 | at_last_nx), act_adv.eq(go_nx & ~stb1 & ~at_last_nx),
                     act_any.eq(stb1 | at_last_nx | go_nx)]
        keyed = Signal()
        m.d.sync += keyed.eq(Mux(sel, rdy[1], rdy[0]))

        # In QRNG mode `go` is just "running, not starting", so the pop (= gate & qrng) is
        # itself a flip-flop computed a cycle ahead; the FIFO's own logic follows it.
        m.d.sync += qpop.eq(~start & ~stb1 & run & qrng)
        # The cores take `en` one cycle ahead (see :class:`.trivium.Trivium`): set s consumes
        # a word in each cycle with `gate & ~qrng & (sel == s)`, so `en` is that expression
        # on the values those flip-flops take at the next edge. Expanded by cases (no start
        # in this or the last cycle: `nostart`; then `qrng` holds and `sel` toggles exactly at
        # a Trivium frame end) it is a function of a few flip-flops: at a frame end the other
        # set starts if running in Trivium mode (`trv_run`) and ready; otherwise the selected
        # set continues (`go_trv` = go in Trivium mode) or starts when ready.
        nostart = Signal()
        trv_run = Signal()
        go_trv = Signal()
        m.d.sync += [nostart.eq(~self.ctrl_stb & ~stb1),
                     go_trv.eq(go_nx & ~Mux(start, ctrl_q[1], qrng))]
        with m.If(start):
            m.d.sync += trv_run.eq(ctrl_q[0] & ~ctrl_q[1])
        for s in range(2):
            rdy_run = trv_run & rdy[s]
            en_s = nostart & Mux(at_last, (sel != s) & rdy_run, (sel == s) & (go_trv | rdy_run))
            for core in cores[s]:
                m.d.comb += core.en.eq(en_s)

        # The enable of the position counters is one flip-flop (`act_any`), the reload
        # select another (`act_reset`), so no gate sits in front of their clock enables.
        # `act_reset` has two more copies (distinct flip-flops: initial value / reset
        # differ, neither acts, see the users) for its ~150 loads: `act_reset_b` (block
        # position; it acts only under `act_any`, low after reset) and `act_reset_f` (frame,
        # `sel`, `pend`; reset-less, 0 at configuration).
        act_reset_b = Signal(init=1)
        act_reset_f = Signal(reset_less=True)
        m.d.sync += [act_reset_b.eq(stb1 | at_last_nx), act_reset_f.eq(stb1 | at_last_nx)]
        with m.If(act_any):
            with m.If(act_reset):
                m.d.sync += [t_clk.eq(0), fr_rem.eq(fc_m3)]
            with m.Else():
                m.d.sync += [t_clk.eq(t_clk + 1), fr_rem.eq(fr_rem - 1)]
        with m.If(act_any):
            with m.If(act_reset_b):
                m.d.sync += [blk_rem.eq(nq_m2), blk_reload.eq(nr_m2), is_ref.eq(0),
                             rph.eq(cfg["ref_phase"][:8])]
            with m.Else():
                with m.If(blk_end):
                    m.d.sync += [blk_rem.eq(blk_reload),
                                 blk_reload.eq(Mux(is_ref, nr_m2, nq_m2)), is_ref.eq(~is_ref)]
                    with m.If(is_ref):
                        m.d.sync += rph.eq(cfg["ref_phase"][:8])
                with m.Else():
                    m.d.sync += blk_rem.eq(blk_rem - 1)
                    with m.If(is_ref):
                        m.d.sync += rph.eq(rph + L * step)
        # frame + 1 and frame + 2 are registered (frames last >= 34 clocks), so a frame end
        # moves values instead of running a 48-bit carry chain.
        frame_p1 = Signal(IV_FRAME_BITS)
        frame_p2 = Signal(IV_FRAME_BITS)
        m.d.sync += [frame_p1.eq(frame + 1), frame_p2.eq(frame + 2)]
        # The IV frame of a set is written while its `pend` is high (the cycle before the
        # cores sample it): frame0 / frame0 + 1 after a start, else the frame after next
        # (frame_p2 still holds the old frame + 2 in that cycle).
        pstart = Signal()
        m.d.sync += pstart.eq(start)
        with m.If(pend[0]):
            m.d.sync += fr[0].eq(Mux(pstart, cfg["frame0"], frame_p2))
        with m.If(pend[1]):
            m.d.sync += fr[1].eq(Mux(pstart, frame0_p1, frame_p2))
        # `act_reset_f` (a flip-flop) = start | at_last: the enable of `frame` and `sel`.
        with m.If(act_reset_f):
            with m.If(start):
                m.d.sync += [pend.eq(0b11), sel.eq(0), frame.eq(cfg["frame0"])]
            with m.Else():
                m.d.sync += frame.eq(frame_p1)
                with m.If(~qrng):
                    m.d.sync += sel.eq(~sel)
                    for s in range(2):
                        with m.If(sel == s):
                            m.d.sync += pend[s].eq(1)
        m.d.comb += [self.frame.eq(frame), self.frame_pos.eq(t_clk << k),
                     self.status.eq(Cat(run, keyed))]

        # ---------------- stage 1: register the three source words, then select
        # The Trivium words are taken from the cores' registered outputs (`z_q`: the word
        # popped in cycle t is there at t + 1); the QRNG word and the slot flags are delayed
        # to match, then all three sources are registered once more before the select.
        q_b = Signal(L * S)
        sel_b = Signal(2)           # 0/1: Trivium set, 2: QRNG
        v_b, ref_b, idle_b = Signal(), Signal(), Signal()
        rph_b = Signal(max(mb, 1))
        m.d.sync += [q_b.eq(qr.data), sel_b.eq(Mux(qrng, 2, sel)), v_b.eq(gate),
                     ref_b.eq(is_ref), idle_b.eq(qrng & ~nonempty), rph_b.eq(rph)]
        triv_raw = [Cat(*[c.z_q for c in cores[s]]) for s in range(2)]
        src_a = [Signal(L * S, name=f"src{i}_a") for i in range(3)]
        sel_a = Signal(2)
        v_a, ref_a, idle_a = Signal(), Signal(), Signal()
        rph_a = Signal(max(mb, 1))
        m.d.sync += [
            src_a[0].eq(triv_raw[0]), src_a[1].eq(triv_raw[1]), src_a[2].eq(q_b),
            sel_a.eq(sel_b), v_a.eq(v_b & ~start), ref_a.eq(ref_b), idle_a.eq(idle_b),
            rph_a.eq(rph_b),
        ]
        raw1 = Signal(L * S)
        v1, ref1, idle1 = Signal(), Signal(), Signal()
        rph1 = Signal(max(mb, 1))
        m.d.sync += [
            raw1.eq(Mux(sel_a[1], src_a[2], Mux(sel_a[0], src_a[1], src_a[0]))),
            v1.eq(v_a & ~start), ref1.eq(ref_a), idle1.eq(idle_a), rph1.eq(rph_a),
        ]

        # ---------------- stage 2: threshold compares (registered)
        # SNS compares u1 < thr0, u2 < thr1, u2 < thr2, u2 < thr3; MDI u1 < thr0..thr2.
        v2a, ref2a, idle2a = Signal(), Signal(), Signal()
        m.d.sync += [v2a.eq(v1 & ~start), ref2a.eq(ref1), idle2a.eq(idle1)]
        t = [cfg[f"thr{i}"] for i in range(4)]
        lt = []
        for j in range(L):
            w = raw1.word_select(j, S)
            u1, u2 = w[:R], w[R:2 * R]
            ux = Mux(mdi, u1, u2)
            ltj = Signal(4, name=f"lt{j}")
            rbit2 = Signal(name=f"rbit{j}")
            ph2 = Signal(max(mb, 1), name=f"ph{j}")
            m.d.sync += [ltj.eq(Cat(u1 < t[0], ux < t[1], ux < t[2], u2 < t[3])),
                         rbit2.eq(w[2 * R]),
                         ph2.eq(w[2 * R + 1:2 * R + 1 + mb] if mb else 0),
                         ]
            lt.append((ltj, rbit2, ph2))
        rph2a = [Signal(max(mb, 1), name=f"rph{j}") for j in range(L)]
        # j * step (mod 2**m) as registered shift-and-add of the local copy (a product with
        # a constant that is not a power of two maps to a DSP multiplier otherwise, which
        # was the critical path of 4-lane transmitters).
        for j in range(L):
            if j & (j - 1):
                stepj = Signal(max(mb, 1), name=f"step_x{j}")
                m.d.sync += stepj.eq(sum(step << b for b in range(3) if j >> b & 1))
            else:
                stepj = step << (j.bit_length() - 1) if j else 0
            m.d.sync += rph2a[j].eq(rph1 + stepj)

        # ---------------- stage 3: mapper and scheduler
        # (the stage's valid flag, v2 = v2a & ~start one cycle later, exists only as
        # `cnt_ok` = v2 & ~clear below)
        lanes2 = Signal(data.ArrayLayout(data.StructLayout({
            "cls": 3, "bit": 1, "phase": max(mb, 1)}), L))
        for j in range(L):
            ltj, rbit, phase = lt[j]
            cls = Signal(3, name=f"cls{j}")
            bit = Signal(name=f"bit{j}")
            with m.If(mdi):
                m.d.comb += [cls.eq(Mux(ltj[0], CLS_Z, Mux(ltj[1], CLS_Y,
                                                            Mux(ltj[2], CLS_X, CLS_O)))),
                             bit.eq(rbit)]
            with m.Else():
                m.d.comb += [cls.eq(Mux(ltj[0], Mux(ltj[1], CLS_ZS, CLS_ZN),
                                        Mux(ltj[2], CLS_X0, Mux(ltj[3], CLS_X1, CLS_X2)))),
                             bit.eq(ltj[0] & ltj[1])]
            lane = lanes2[j]
            with m.If(ref2a):
                m.d.sync += [lane.cls.eq(CLS_REF), lane.bit.eq(0), lane.phase.eq(rph2a[j])]
            with m.Elif(idle2a):
                m.d.sync += [lane.cls.eq(CLS_IDLE), lane.bit.eq(0), lane.phase.eq(0)]
            with m.Else():
                m.d.sync += [lane.cls.eq(cls), lane.bit.eq(bit), lane.phase.eq(phase)]

        # ---------------- counters
        # The per-clock increment is registered first. The 64-bit sum is two 32-bit halves
        # with a registered carry; the low half is delayed one cycle to match, so the value
        # read is always consistent (it lags the output stream by two cycles). The clear is
        # spread over a chain of flip-flops (one per counter pair, 1..4 cycles after `clear`;
        # the first increment of a new run comes at least 7 cycles after it), so no single
        # net drives the reset of 450 flip-flops.
        clr = [Signal(name=f"clr{i}") for i in range(4)]
        m.d.sync += [clr[0].eq(clear)] + [clr[i].eq(clr[i - 1]) for i in range(1, 4)]
        # cnt_ok = v2 & ~clear as a flip-flop: `clear` of the next cycle is known now.
        cnt_ok = Signal()
        clear_nx = stb1 & Mux(self.ctrl_stb, self.ctrl[0], ctrl_q[0])
        m.d.sync += cnt_ok.eq(v2a & ~start & ~clear_nx)
        for c in range(N_CLASSES):
            inc = Signal(range(L + 1), name=f"inc{c}")
            lo = Signal(33, name=f"cnt{c}_lo")      # bit 32: carry into the high half
            lo_d = Signal(32, name=f"cnt{c}_lo_d")
            hi = Signal(32, name=f"cnt{c}_hi")
            m.d.sync += inc.eq(Mux(cnt_ok, sum((lanes2[j].cls == c) for j in range(L)), 0))
            m.d.sync += lo_d.eq(lo[:32])
            with m.If(clr[c // 2]):
                m.d.sync += [lo.eq(0), hi.eq(0)]
            with m.Else():
                m.d.sync += [lo.eq(lo[:32] + inc), hi.eq(hi + lo[32])]
            m.d.comb += getattr(self, f"count{c}").eq(Cat(lo_d, hi))

        # ---------------- stage 4: LUTs
        im_mem = Memory(shape=p.im_bits, depth=16, init=[])
        pm_mem = Memory(shape=p.pm_bits, depth=2 << mb, init=[])
        m.submodules.im_mem = im_mem
        m.submodules.pm_mem = pm_mem
        imw = im_mem.write_port()
        pmw = pm_mem.write_port()
        m.d.sync += [imw.addr.eq(self.im_lut[16:20]), imw.data.eq(self.im_lut[:p.im_bits]),
                     imw.en.eq(self.im_lut_stb),
                     pmw.addr.eq(self.pm_lut[16:17 + mb]), pmw.data.eq(self.pm_lut[:p.pm_bits]),
                     pmw.en.eq(self.pm_lut_stb)]
        out = Signal(data.ArrayLayout(self.layout, L))
        v3 = Signal()
        m.d.sync += v3.eq(cnt_ok)        # = v2 & ~clear: a restart drops, a stop drains
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
