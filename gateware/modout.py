"""Modulator output path: pattern slots from the ``sync`` domain to DDR pins in ``fast``.

A transmitter's pattern generator makes ``L`` slots per ``sync`` cycle; the board drives its
modulators through DDR gearing, which takes ``R`` bits per pin per ``fast`` cycle: ``R = 4``
for ``ODDRX2F`` (:class:`combkey.boards.base.ODDRX2FOutput`), ``R = 2`` for ``ODDRX1F``.
:class:`ModulatorOutput` carries the slot stream across: it groups slots into words of
``S = max(L, R)`` slots in ``sync``, crosses an ``AsyncFIFO``, and emits ``R`` slots per
``fast`` cycle. The two clocks must carry the same slot rate,

    ``f_fast = f_sync * L / R``  (:func:`fast_clk_hz`),

which the board's PLL makes exactly (both from one VCO), so after the start-up fill the FIFO level
stays constant; any mismatch or gap is counted, never hidden.

Interface
---------
``i : In(stream.Signature(ArrayLayout(unsigned(P), L), always_ready=True))``, ``sync``
    ``P`` pin bits per slot, lane 0 first in time. The transmitter maps slot ``s`` to the pins
    as ``{pm_code[1:0], im_code[1:0]}`` (pin 0 = ``im_code[0]``): four-level drivers for the
    intensity and phase modulators, whose levels the host writes into the generator's lookup
    tables (only the two low bits of each table entry reach the pins).
``lanes : Out(R * P)``, ``fast``
    Bits ``R*k .. R*k+R-1`` go to pin ``k``, bit ``R*k`` first in time, i.e.
    ``lanes[R*k + j] = slot[R*t + j][k]`` for the ``t``-th output word.
``active : Out(1)``, ``fast``
    High while words are being sent (after the start-up fill).

Registers (``sync``; prefix ``mod`` in the transmitter)
------------------------------------------------------
``enable`` (RW, 1)
    0: nothing enters the FIFO; the fast side stops sending (pins low), empties the FIFO and
    re-arms. 1: slots are grouped from the next ``i.valid`` beat on; the fast side starts once
    the FIFO holds ``prefill`` words.
``underflows`` (R, 32)
    ``fast`` cycles that found no word while active (pins low for those ``R`` slots). Counted in
    ``fast`` as a Gray code and carried to ``sync`` through a two-flip-flop synchroniser, so the
    value read is always one the counter really held.
``overflows`` (R, 32)
    Words dropped because the FIFO was full.

Latency: a slot reaches the pins about ``prefill + 4`` ``fast`` cycles after it entered; the
order of slots is never changed and no slot is repeated.

Model: :func:`modout_words` gives the ``lanes`` words of a slot stream, i.e. what the pins send
while ``active``. Across the two clocks the comparison is made word by word, with the accounting
identity: every word made in ``sync`` is sent once, dropped (``overflows``) or still queued; every
``active`` fast cycle sends a word or counts one underflow.
"""
import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import AsyncFIFO
from amaranth.lib.wiring import In, Out

from .regs import Access, Reg

__all__ = ["ModulatorOutput", "modout_words", "fast_clk_hz",
           "gray_encode", "gray_decode", "SLOTS_PER_FAST", "RATIOS"]

#: Slots per pin per ``fast`` cycle of the ODDRX2F gearing (the default ratio ``R``).
SLOTS_PER_FAST = 4
#: Gearing ratios ``R`` the block supports: ODDRX1F (2) and ODDRX2F (4).
RATIOS = (2, 4)


def fast_clk_hz(sync_clk_hz, lanes, ratio=SLOTS_PER_FAST):
    """Return the ``fast`` clock that carries ``lanes`` slots per ``sync`` cycle, Hz."""
    return sync_clk_hz * lanes / ratio


def gray_encode(value):
    """Return the reflected binary Gray code of ``value`` (int or numpy integers)."""
    return value ^ (value >> 1)


def gray_decode(code, width=32):
    """Return the binary value of Gray ``code`` (int) of ``width`` bits."""
    value = 0
    for k in reversed(range(width)):
        value |= (((value >> (k + 1)) & 1) ^ ((code >> k) & 1)) << k
    return value


def _check(name, value, allowed):
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, not {value!r}")


def modout_words(slots, pins=4, ratio=SLOTS_PER_FAST):
    """Return the ``lanes`` words (numpy uint64) that send ``slots`` (1-D array of P-bit codes).

    ``len(slots)`` must be a multiple of ``ratio``; word ``t`` carries slots
    ``ratio*t .. ratio*t + ratio - 1``.
    """
    slots = np.asarray(slots, dtype=np.uint64)
    if slots.ndim != 1 or len(slots) % ratio:
        raise ValueError(f"slots must be 1-D with a multiple of {ratio} entries, not shape "
                         f"{slots.shape}")
    groups = slots.reshape(-1, ratio)
    words = np.zeros(len(groups), dtype=np.uint64)
    for k in range(pins):
        for j in range(ratio):
            bit = (groups[:, j] >> np.uint64(k)) & np.uint64(1)
            words |= bit << np.uint64(ratio * k + j)
    return words


class ModulatorOutput(wiring.Component):
    """Slots from ``sync`` to ODDRX2F words in ``fast`` (see module docstring).

    Parameters
    ----------
    lanes : int
        Slots per ``sync`` cycle: 1, 2, 4 or 8.
    pins : int
        Pin bits per slot (1..8).
    depth : int
        AsyncFIFO depth in words (power of two, >= 4).
    prefill : int
        Words in the FIFO before the fast side starts (1..depth-1).
    ratio : int
        Slots per pin per ``fast`` cycle, ``R``: 4 (ODDRX2F) or 2 (ODDRX1F).
    """

    def __init__(self, lanes=4, pins=4, depth=16, prefill=8, ratio=SLOTS_PER_FAST):
        _check("lanes", lanes, {1, 2, 4, 8})
        _check("ratio", ratio, set(RATIOS))
        self.ratio = ratio
        _check("pins", pins, set(range(1, 9)))
        _check("depth", depth, {4, 8, 16, 32, 64})
        if isinstance(prefill, bool) or not isinstance(prefill, int) or \
                not 1 <= prefill < depth:
            raise ValueError(f"prefill must be an int in 1..{depth - 1}, not {prefill!r}")
        self.n_lanes, self.pins, self.depth, self.prefill = lanes, pins, depth, prefill
        self.group = max(lanes, ratio)
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(pins, lanes), always_ready=True)),
            "lanes": Out(ratio * pins),
            "active": Out(1),
            "enable": In(1),
            "underflows": Out(32),
            "overflows": Out(32),
        })

    @staticmethod
    def registers():
        return [
            Reg("enable", 1, Access.RW, doc="1: send the pattern on the modulator pins"),
            Reg("underflows", 32, Access.R,
                doc="fast cycles without a word while sending (pins low meanwhile)"),
            Reg("overflows", 32, Access.R, doc="words dropped because the FIFO was full"),
        ]

    def elaborate(self, platform):
        m = Module()
        P, L, S = self.pins, self.n_lanes, self.group
        m.submodules.fifo = fifo = AsyncFIFO(width=S * P, depth=self.depth,
                                             w_domain="sync", r_domain="fast")

        # -- sync: group L-slot beats into S-slot words --------------------------------------
        beats = S // L                       # beats per word (1 when L >= 4)
        shreg = Signal(S * P)
        count = Signal(range(beats + 1))
        beat_bits = self.i.payload.as_value()
        overflows = Signal(32)
        m.d.comb += self.overflows.eq(overflows)
        with m.If(~self.enable):
            m.d.sync += count.eq(0)
        with m.Elif(self.i.valid):
            if beats == 1:
                m.d.comb += [fifo.w_data.eq(beat_bits), fifo.w_en.eq(1)]
                with m.If(~fifo.w_rdy):
                    m.d.sync += overflows.eq(overflows + 1)
            else:
                # The newest beat goes on top: the first beat of a word ends in the low bits.
                new = Signal(S * P)
                m.d.comb += new.eq(beat_bits << ((beats - 1) * L * P)
                                   | (shreg >> (L * P)))
                m.d.sync += shreg.eq(new)
                with m.If(count == beats - 1):
                    m.d.sync += count.eq(0)
                    m.d.comb += [fifo.w_data.eq(new), fifo.w_en.eq(1)]
                    with m.If(~fifo.w_rdy):
                        m.d.sync += overflows.eq(overflows + 1)
                with m.Else():
                    m.d.sync += count.eq(count + 1)

        # -- fast: arm, send R slots per cycle, count underflows -----------------------------
        en_f = Signal()
        m.submodules.en_sync = FFSynchronizer(self.enable, en_f, o_domain="fast")
        armed = Signal()
        R = self.ratio
        subs = S // R                       # fast cycles per word
        held = Signal(S * P)
        phase = Signal(range(subs + 1))
        out = Signal(R * P)
        under_bin = Signal(32)
        under_gray = Signal(32)

        def words_of(word_bits, first):
            """Slots first..first+R-1 of a word, rearranged to pin-major lanes bits."""
            bits = []
            for k in range(P):
                for j in range(R):
                    bits.append(word_bits[(first + j) * P + k])
            return bits

        sending = Signal()                  # registered with ``out``: this word is real
        m.d.comb += [self.lanes.eq(out), self.active.eq(sending)]
        m.d.fast += sending.eq(en_f & armed)
        with m.If(~en_f):
            m.d.fast += [armed.eq(0), phase.eq(0), out.eq(0)]
            m.d.comb += fifo.r_en.eq(1)      # empty the FIFO while disabled
        with m.Elif(~armed):
            m.d.fast += out.eq(0)
            with m.If(fifo.r_level >= self.prefill):
                m.d.fast += armed.eq(1)
        with m.Elif(phase == 0):
            with m.If(fifo.r_rdy):
                m.d.comb += fifo.r_en.eq(1)
                m.d.fast += [out.eq(Cat(*words_of(fifo.r_data, 0))), held.eq(fifo.r_data)]
                if subs > 1:
                    m.d.fast += phase.eq(1)
            with m.Else():
                m.d.fast += [out.eq(0), under_bin.eq(under_bin + 1),
                             under_gray.eq(gray_encode(under_bin + 1))]
        if subs > 1:
            with m.Elif(phase != 0):
                with m.Switch(phase):
                    for p in range(1, subs):
                        with m.Case(p):
                            m.d.fast += out.eq(Cat(*words_of(held, R * p)))
                m.d.fast += phase.eq(Mux(phase == subs - 1, 0, phase + 1))

        # -- underflow count into sync: Gray code through two flip-flops ----------------------
        gray_s = Signal(32)
        m.submodules.under_sync = FFSynchronizer(under_gray, gray_s, o_domain="sync")
        decoded = [None] * 32
        decoded[31] = gray_s[31]
        for k in reversed(range(31)):
            decoded[k] = decoded[k + 1] ^ gray_s[k]
        under_s = Signal(32)
        m.d.sync += under_s.eq(Cat(*decoded))
        m.d.comb += self.underflows.eq(under_s)
        return m

