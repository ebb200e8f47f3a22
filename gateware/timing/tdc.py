"""Carry-chain TDC: delay-line model, ECP5 delay line, encoder, code-density calibration.

Time base and units
-------------------
The system clock has period ``T``. A timestamp is ``t = coarse * UNITS_PER_CYCLE - fine`` in
**tagger units** of ``T / UNITS_PER_CYCLE`` (``UNITS_PER_CYCLE = 38400 = 2**9 * 3 * 5**2``, so
that slot periods of ``T/2 ... T/64``, ``T/3``, ``T/10`` and ``T/12.5`` are whole numbers of
units; 0.130 ps at 200 MHz). ``fine`` is the time from the hit to the clock edge that detected it
(larger code, earlier hit).

Delay lines
-----------
A channel has ``lines`` delay lines of ``taps`` taps each. The hit enters every line (through a
launcher that skews the lines by a fraction of a tap, as a wave-union launcher does); at each
clock edge the taps the hit has already reached read 1. The fine code is the **number of ones over
all lines** (a ones counter: bubbles, i.e. out-of-order taps near the front, do not change it),
so ``lines`` chains of mean tap ``d`` give an effective bin of about ``d / lines``.

* :class:`DelayLineModel` (numpy) stands in for the silicon: tap delays drawn from a gamma
  distribution of configurable mean and relative spread, per-line skew, bubbles as adjacent
  swaps at the front.
* :class:`ECP5DelayLine` is the hardware: an adder ``ones + hit`` that Yosys maps to a CCU2C
  carry chain (Lattice FPGA-TN-02032 "ECP5 and ECP5-5G sysDSP/carry" / FPGA-DS-02012 ECP5
  family data sheet, carry chain); the inverted sum bits are the taps, sampled by the system
  clock. Only for synthesis; simulation drives :class:`TDC` ``therm`` from the model.

TDC (N channels)
----------------
Members
    ``therm``: ``In(ArrayLayout(lines*taps, channels))``: sampled taps per channel, line ``l`` tap
    ``j`` at bit ``l*taps + j``.
    ``hit``: ``Out(channels)``: channel ``c`` detected a rising edge ``latency`` cycles ago.
    ``code``: ``Out(ArrayLayout(code_bits, channels))``: its fine code, ``0..lines*taps``.
    ``holdoff``: ``In(8)``: dead time in cycles after a tagged hit; hits inside it are not
    tagged and count in ``dead_<c>``.
    ``dead_<c>``: ``Out(32)``: wrapping count of hits of channel ``c`` inside the hold-off.

A rising edge is detected when tap 0 or 1 of line 0 reads 1 and read 0 at the previous edge (so
input pulses and gaps must last one clock period; SNSPD pulses of a few ns at 200 MHz do).
``latency = 2 + popcount stages`` (:attr:`TDC.latency`), one hit per channel per cycle.

Registers (``registers()``): ``holdoff`` (RW, 8 bits, cycles), ``dl_enable`` (RW 1, reset 1:
registered once, it gates every channel's edge detector: while 0 no hit is detected, and a line
already high when it returns to 1 counts as a rising edge), ``dead_<c>`` (R, 32 bits).

Calibration
-----------
:func:`code_density_table` turns a code histogram of hits uniform in time into the bin-centre
table (code -> fine in tagger units) that the host writes into :class:`~.tagger.Tagger`;
:func:`linear_table` is the uncalibrated table (nominal LSB); :func:`dnl_inl` gives DNL/INL in LSB.
Citation for the method: J. Wu, "Several key issues on implementing delay line based TDCs using
FPGAs", IEEE Trans. Nucl. Sci. 57 (2010), doi:10.1109/TNS.2010.2045901 (code density, wave union).
"""
import dataclasses
import math

import numpy as np
from amaranth.hdl import Const, Instance, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..regs import Access, Reg

__all__ = ["UNITS_PER_CYCLE", "ECP5_TAP_PS", "check_line_covers_period", "DelayLineConfig",
           "DelayLineModel", "ECP5DelayLine", "TDC", "delay_line_placement", "tdc_placement",
           "SYNTH_PLATFORM", "tdc_model", "check_tdc_params", "code_density_table",
           "saturated_fraction", "linear_table", "dnl_inl", "popcount_latency"]

#: Tagger time units per system clock period.
UNITS_PER_CYCLE = 38400

#: Nominal mean carry-chain tap of the ECP5 (ps): the value measured on an LFE5U-25F carry chain
#: that issue 7's benchmark uses. Board builds size the delay lines with it
#: (:func:`check_line_covers_period`); the real tap depends on device, speed grade, voltage and
#: temperature, which is why the host calibrates (code density) and reports the range covered.
ECP5_TAP_PS = 43.0

#: Margin by which ``taps * ECP5_TAP_PS`` must exceed the clock period in a board build.
LINE_COVER_MARGIN = 1.05


def check_line_covers_period(taps, clk_hz, tap_ps=ECP5_TAP_PS, margin=LINE_COVER_MARGIN):
    """Raise ``ValueError`` naming ``taps`` when a delay line of ``taps`` taps of ``tap_ps``
    does not cover one clock period of ``clk_hz`` with ``margin``.

    A hit is timed from its arrival to the next clock edge; a line shorter than the period
    saturates for every hit that arrives earlier than ``taps * tap_ps`` before the edge, so its
    fine time would be wrong for most hits. Returns the covered fraction of the period.
    """
    period_ps = 1e12 / clk_hz
    covered = taps * tap_ps
    if covered < margin * period_ps:
        need = math.ceil(margin * period_ps / tap_ps)
        raise ValueError(f"taps must cover the {period_ps:.0f} ps clock period with "
                         f"{margin:g}x margin at {tap_ps:g} ps per tap (at least {need} taps), "
                         f"not {taps!r} ({covered:.0f} ps)")
    return covered / period_ps


@dataclasses.dataclass(frozen=True)
class DelayLineConfig:
    """Delay-line model parameters.

    ``tap_mean_ps`` mean tap delay (43 ps measured on an LFE5U-25F carry chain), ``tap_spread``
    relative standard deviation of a tap, ``lines`` chains summed, ``taps`` per chain,
    ``clock_hz`` sampling clock, ``skew`` per-line launch skew as a fraction of a tap (default
    ``i / lines``, the wave-union spacing), ``bubble_prob`` probability of an adjacent swap at
    the front, ``seed`` for the tap draw.
    """

    lines: int = 4
    taps: int = 128
    tap_mean_ps: float = 43.0
    tap_spread: float = 0.35
    clock_hz: float = 200e6
    skew: tuple = None
    bubble_prob: float = 0.0
    seed: int = 1

    def __post_init__(self):
        for name in ("lines", "taps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, not {v!r}")
        if not self.tap_mean_ps > 0:
            raise ValueError(f"tap_mean_ps must be > 0, not {self.tap_mean_ps!r}")
        if not 0 <= self.tap_spread < 2:
            raise ValueError(f"tap_spread must be in [0, 2), not {self.tap_spread!r}")
        if self.skew is not None and len(self.skew) != self.lines:
            raise ValueError(f"skew must have one entry per line ({self.lines}), "
                             f"not {self.skew!r}")
        if 1e12 / self.clock_hz >= self.taps * self.tap_mean_ps * 0.95:
            raise ValueError(f"taps * tap_mean_ps must cover a clock period "
                             f"({1e12 / self.clock_hz:.0f} ps) with margin, "
                             f"not {self.taps * self.tap_mean_ps:.0f} ps")

    @property
    def period_ps(self):
        return 1e12 / self.clock_hz


class DelayLineModel:
    """Numpy stand-in for the carry chains of one channel (see :class:`DelayLineConfig`).

    ``arrival[l, j]`` is the time (ps) after the hit at which tap ``j`` of line ``l`` reads 1.
    """

    def __init__(self, cfg, channel=0):
        self.cfg = cfg
        rng = np.random.default_rng([cfg.seed, channel])
        if cfg.tap_spread > 0:
            k = 1 / cfg.tap_spread ** 2
            d = rng.gamma(k, cfg.tap_mean_ps / k, size=(cfg.lines, cfg.taps))
        else:
            d = np.full((cfg.lines, cfg.taps), cfg.tap_mean_ps)
        skew = cfg.skew if cfg.skew is not None else [i / cfg.lines for i in range(cfg.lines)]
        self.arrival = np.cumsum(d, axis=1) + np.asarray(skew)[:, None] * cfg.tap_mean_ps
        self._rng = np.random.default_rng([cfg.seed, channel, 7])
        self.sorted_arrival = np.sort(self.arrival.ravel())

    def code(self, tau_ps):
        """Fine code (ones count) for hits ``tau_ps`` before the sampling edge."""
        return np.searchsorted(self.sorted_arrival, np.asarray(tau_ps), side="right")

    def lead_ps(self):
        """Smallest ``tau`` at which the rising edge is seen (tap 0 or 1 of line 0)."""
        return float(min(self.arrival[0, 0], self.arrival[0, 1]))

    def sample(self, rise_ps, width_ps, n_cycles):
        """Sampled taps per cycle for pulses rising at ``rise_ps`` (sorted) of ``width_ps``.

        Returns ``uint8[n_cycles, lines*taps]``; cycle ``k`` samples at ``k * T``.
        """
        cfg = self.cfg
        rise = np.asarray(rise_ps, dtype=float)
        edges = np.arange(n_cycles) * cfg.period_ps
        tau = edges[:, None] - self.arrival.ravel()[None, :]
        idx = np.searchsorted(rise, tau, side="right") - 1
        level = (idx >= 0) & (tau < rise[np.maximum(idx, 0)] + width_ps)
        bits = level.astype(np.uint8)
        if cfg.bubble_prob > 0:
            bits = bits.reshape(n_cycles, cfg.lines, cfg.taps)
            front = np.argwhere(np.diff(bits, axis=2) != 0)
            swap = self._rng.random(len(front)) < cfg.bubble_prob
            for k, ln, j in front[swap]:
                bits[k, ln, j], bits[k, ln, j + 1] = bits[k, ln, j + 1], bits[k, ln, j]
            bits = bits.reshape(n_cycles, -1)
        return bits


def popcount_latency(nbits, group=6):
    """Pipeline stages of the ones counter for ``nbits`` inputs."""
    n = -(-nbits // group)
    stages = 1
    while n > 1:
        n = -(-n // 2)
        stages += 1
    return stages


def _popcount(m, bits, group=6):
    level = []
    for i in range(0, len(bits), group):
        g = bits[i:i + group]
        s = Signal(range(len(g) + 1), reset_less=True)
        m.d.sync += s.eq(sum(g[j] for j in range(len(g))))
        level.append((s, len(g)))
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level), 2):
            if i + 1 < len(level):
                (a, na), (b, nb) = level[i], level[i + 1]
                s = Signal(range(na + nb + 1), reset_less=True)
                m.d.sync += s.eq(a + b)
                nxt.append((s, na + nb))
            else:
                a, na = level[i]
                s = Signal(range(na + 1), reset_less=True)
                m.d.sync += s.eq(a)
                nxt.append((s, na))
        level = nxt
    return level[0][0]


class ECP5DelayLine(wiring.Component):
    """``taps``-tap carry chain of explicit CCU2C cells (hardware only; module docstring).

    Members: ``hit: In(1)`` asynchronous detector input, ``taps: Out(taps)`` taps sampled on the
    ``sync`` clock (thermometer, 1 = reached). The tap flip-flops have no reset, enable or set:
    each takes its carry output directly (``dl_enable`` acts in :class:`TDC` instead, on one
    signal per channel rather than on every tap).

    Bit 0 of the chain generates the carry from ``hit`` (``A = B = hit``); bits 1..taps always
    propagate it (``A = 1, B = 0``: no register drives the carry path, so static timing sees
    no flip-flop-to-tap path through the chain), and tap ``j`` is the carry out of bit ``j``
    (sum bit ``j + 1`` sampled, then inverted). Elaborated with ``platform=None`` (pysim) the
    chain is the equivalent adder; with any platform (a board, or :data:`SYNTH_PLATFORM` for
    ``amaranth.back.rtlil.convert``) it is the CCU2C cells: ``cells = (taps + 2) // 2`` CCU2C
    (two bits each), marked ``keep``.
    ``placement``: ``None`` or a sequence of ``cells`` nextpnr-ecp5 BEL names (see
    :func:`delay_line_placement`), attached to the cells as the ``BEL`` attribute.
    """

    # LUT of one CCU2C half for a + b + carry with C = 0, D = 1 (as Yosys' arith_map_ccu2c).
    INIT = 0x96AA

    def __init__(self, taps, placement=None):
        if not isinstance(taps, int) or taps < 2:
            raise ValueError(f"taps must be an int >= 2, not {taps!r}")
        self.n = taps
        self.cells = (taps + 2) // 2
        if placement is not None:
            placement = tuple(placement)
            if len(placement) != self.cells or not all(isinstance(b, str) for b in placement):
                self._MustUse__silence = True        # never elaborated: no unused warning
                raise ValueError(f"placement must be {self.cells} BEL names (one per CCU2C), "
                                 f"not {placement!r}")
        self.placement = placement
        super().__init__({"hit": In(1), "taps": Out(taps)})

    def elaborate(self, platform):
        m = Module()
        ones = (1 << self.n) - 1
        if platform is None:
            # Simulation (pysim cannot run CCU2C instances): the same carry arithmetic as an
            # adder, which the hit crosses within the cycle, so a pulse gives the full code.
            chain = Signal(self.n + 1)
            m.d.comb += chain.eq(Const(ones, self.n) + self.hit)
            s = chain[:self.n]
        else:
            sbits = Signal(2 * self.cells)
            cin = Const(0, 1)
            for k in range(self.cells):
                cout = Signal(name=f"co{k}")
                a0 = self.hit if k == 0 else Const(1, 1)
                b0 = self.hit if k == 0 else Const(0, 1)
                attrs = {"a_keep": 1}
                if self.placement is not None:
                    attrs["a_BEL"] = self.placement[k]
                m.submodules[f"cc{k}"] = Instance(
                    "CCU2C", p_INIT0=Const(self.INIT, 16), p_INIT1=Const(self.INIT, 16),
                    p_INJECT1_0="NO", p_INJECT1_1="NO",
                    i_A0=a0, i_B0=b0, i_C0=Const(0, 1), i_D0=Const(1, 1),
                    i_A1=Const(1, 1), i_B1=Const(0, 1), i_C1=Const(0, 1), i_D1=Const(1, 1),
                    i_CIN=cin, o_S0=sbits[2 * k], o_S1=sbits[2 * k + 1], o_COUT=cout, **attrs)
                cin = cout
            s = sbits[1:self.n + 1]
        # The sum bits go straight into flip-flops (no LUT, set, reset or enable between chain
        # and flip-flop); the inversion to taps is after the flip-flops.
        sampled = Signal(self.n, init=ones, reset_less=True)
        m.d.sync += sampled.eq(s)
        m.d.comb += self.taps.eq(~sampled)
        return m


class _SynthPlatform:
    """Stand-in platform for out-of-context synthesis (``rtlil.convert(..., platform=)``)."""

    def __repr__(self):
        return "SYNTH_PLATFORM"


#: Pass as ``platform`` to ``amaranth.back.rtlil.convert`` to get the CCU2C delay lines.
SYNTH_PLATFORM = _SynthPlatform()


def delay_line_placement(start, cells, *, slice_index=0, tiles=None):
    """nextpnr-ecp5 BEL names for a carry chain of ``cells`` CCU2C starting at a PLC tile.

    ECP5 carry runs through the four slices of a PLC tile (``SLICEA`` .. ``SLICED``) and on to
    the next tile to the right in the same row (``X+1``), which is how nextpnr places a chain.
    ``start = (x, y)``: tile of the first cell, ``slice_index`` its slice (0..3). Returns
    ``["X{x}/Y{y}/SLICE{A..D}", ...]``. ``tiles``: optional ``(x_max, y_max)`` to check that
    the chain stays on the die.
    """
    x, y = start
    if not (isinstance(x, int) and isinstance(y, int) and x >= 0 and y >= 0):
        raise ValueError(f"start must be an (x, y) pair of tile coordinates, not {start!r}")
    if slice_index not in (0, 1, 2, 3):
        raise ValueError(f"slice_index must be 0..3, not {slice_index!r}")
    out = []
    for k in range(cells):
        t, sl = divmod(slice_index + k, 4)
        out.append(f"X{x + t}/Y{y}/SLICE{'ABCD'[sl]}")
    if tiles is not None:
        last_x = x + (slice_index + cells - 1) // 4
        if last_x > tiles[0] or y > tiles[1]:
            raise ValueError(f"a chain of {cells} cells from {start!r} leaves the die "
                             f"(last tile X{last_x}/Y{y}, die {tiles!r})")
    return out


def tdc_placement(inputs, lines, taps, *, row_step=1, tiles=None):
    """Placement of every delay line of a TDC: ``{(channel, line): [BEL, ...]}``.

    ``inputs``: per channel, the PLC tile ``(x, y)`` next to that channel's input PIO (the
    first tile inside the die on the pin's row: the chain starts where the pulse enters the
    fabric). Line ``l`` of a channel starts in the same column, ``l * row_step`` rows further
    down (rows ``y, y + row_step, ...``), so a channel's lines are parallel chains of equal
    length from the same column. Cells per line: ``(taps + 2) // 2``.
    """
    cells = (taps + 2) // 2
    out = {}
    for c, start in enumerate(inputs):
        for ln in range(lines):
            x, y = start
            out[(c, ln)] = delay_line_placement((x, y + ln * row_step), cells, tiles=tiles)
    return out


def check_tdc_params(channels, lines, taps):
    """Raise ``ValueError`` naming the parameter when a :class:`TDC` shape is invalid."""
    for name, v in (("channels", channels), ("lines", lines), ("taps", taps)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, not {v!r}")
    if channels > 32:
        raise ValueError(f"channels must be at most 32, not {channels!r}")
    if taps < 2:
        raise ValueError(f"taps must be at least 2, not {taps!r}")


class TDC(wiring.Component):
    """N-channel thermometer encoder with hit detection and hold-off (module docstring)."""

    def __init__(self, channels=16, lines=4, taps=128):
        check_tdc_params(channels, lines, taps)
        self.channels, self.lines, self.taps = channels, lines, taps
        self.nbits = lines * taps
        self.code_bits = ceil_log2(self.nbits + 1)
        self.latency = 2 + popcount_latency(self.nbits)
        members = {
            "therm": In(data.ArrayLayout(self.nbits, channels)),
            "hit": Out(channels),
            "code": Out(data.ArrayLayout(self.code_bits, channels)),
            "holdoff": In(8),
            "dl_enable": In(1, init=1),
        }
        for c in range(channels):
            members[f"dead_{c}"] = Out(32)
        super().__init__(members)

    def registers(self):
        regs = [Reg("holdoff", 8, Access.RW, 2,
                    "Channel dead time after a tagged hit, clock cycles."),
                Reg("dl_enable", 1, Access.RW, 1,
                    "1: hits are detected (0: the delay lines are ignored, no hits).")]
        regs += [Reg(f"dead_{c}", 32, Access.R, 0,
                     f"Hits of channel {c} inside the hold-off (wrapping count).")
                 for c in range(self.channels)]
        return regs

    def elaborate(self, platform):
        m = Module()
        pstages = self.latency - 2
        enable = Signal(init=1)
        m.d.sync += enable.eq(self.dl_enable)
        for c in range(self.channels):
            # Second sampling stage (metastability) and the ones counter carry data only:
            # no reset, so the reset net does not reach the thousands of tap flip-flops.
            th = Signal(self.nbits, name=f"th{c}", reset_less=True)
            m.d.sync += th.eq(self.therm[c])
            lead = (th[0] | th[1]) & enable
            lead_prev = Signal(name=f"lead_prev{c}")
            m.d.sync += lead_prev.eq(lead)
            edge = lead & ~lead_prev
            pipe = [edge]
            for i in range(pstages):
                s = Signal(name=f"edge{c}_{i}")
                m.d.sync += s.eq(pipe[-1])
                pipe.append(s)
            count = _popcount(m, th)
            raw_hit = pipe[-1]
            hold = Signal(8, name=f"hold{c}")
            dead = getattr(self, f"dead_{c}")
            with m.If(hold != 0):
                m.d.sync += hold.eq(hold - 1)
            with m.If(raw_hit):
                with m.If(hold == 0):
                    m.d.sync += [self.hit[c].eq(1), self.code[c].eq(count),
                                 hold.eq(self.holdoff)]
                with m.Else():
                    m.d.sync += [self.hit[c].eq(0), self.code[c].eq(0), dead.eq(dead + 1)]
            with m.Else():
                m.d.sync += [self.hit[c].eq(0), self.code[c].eq(0)]
        return m


def tdc_model(therm, lines, taps, holdoff=2, dl_enable=None):
    """Cycle model of :class:`TDC`.

    ``therm``: ``uint8[cycles, channels, lines*taps]`` sampled taps; ``dl_enable``: ``None``
    (always 1) or the register's value per cycle (``[cycles]`` of 0/1). Returns ``(hit, code,
    dead)`` per output cycle (``int64[cycles, channels]``, already delayed by ``latency``) and
    the final dead counts.
    """
    therm = np.asarray(therm)
    n, ch, nb = therm.shape
    if nb != lines * taps:
        raise ValueError(f"therm must have lines*taps = {lines * taps} bits, not {nb!r}")
    lat = 2 + popcount_latency(nb)
    # therm of cycle k is registered (th) at edge k; dl_enable set in cycle k is registered
    # at the same edge, so both meet in the edge detector.
    en = np.ones(n, np.uint8) if dl_enable is None else np.asarray(dl_enable, np.uint8)
    if en.shape != (n,):
        raise ValueError(f"dl_enable must have one value per cycle ({n}), not shape {en.shape}")
    lead = (therm[:, :, 0] | therm[:, :, 1]) & en[:, None]
    prev = np.vstack([np.zeros((1, ch), lead.dtype), lead[:-1]])
    edge = (lead & ~prev & 1).astype(np.int64)
    count = therm.sum(axis=2).astype(np.int64)
    hit = np.zeros((n, ch), np.int64)
    code = np.zeros((n, ch), np.int64)
    dead_trace = np.zeros((n, ch), np.int64)
    hold = np.zeros(ch, np.int64)
    dead = np.zeros(ch, np.int64)
    # the hit of input cycle k is visible at the outputs in cycle k + lat
    for k in range(n):
        kout = k + lat
        h = edge[k]
        new_hold = np.maximum(hold - 1, 0)
        take = (h == 1) & (hold == 0)
        drop = (h == 1) & (hold != 0)
        if kout < n:
            hit[kout] = take
            code[kout] = np.where(take, count[k], 0)
        dead = (dead + drop) & 0xFFFF_FFFF
        new_hold = np.where(take, holdoff, new_hold)
        hold = new_hold
        if kout < n:
            dead_trace[kout] = dead
    return hit, code, dead_trace


def saturated_fraction(hist):
    """Fraction of a code-density histogram at the top code (every tap of every line reached).

    A hit is timed up to the next clock edge; with lines longer than the clock period no hit
    reaches the last tap, so the fraction is 0. Lines shorter than the period send every hit
    that arrives more than their length before the edge to the top code: the fraction is then
    about ``1 - length / period``, the share of hits whose fine time is lost.
    """
    hist = np.asarray(hist)
    total = hist.sum()
    if hist.ndim != 1 or len(hist) < 2 or total <= 0:
        raise ValueError(f"hist must be a 1-d histogram of at least 2 codes with hits, "
                         f"not shape {hist.shape} with {total} hits")
    return float(hist[-1] / total)


def linear_table(n_codes, lsb_ps, clock_hz):
    """Uncalibrated table: code ``c`` -> ``round((c - 0.5) * lsb)`` in tagger units."""
    unit_ps = 1e12 / clock_hz / UNITS_PER_CYCLE
    c = np.arange(n_codes)
    return np.clip(np.rint((c - 0.5) * lsb_ps / unit_ps), 0, None).astype(np.int64)


def code_density_table(hist, units_per_cycle=UNITS_PER_CYCLE):
    """Bin-centre table from a code-density histogram.

    ``hist[c]`` counts hits uniform in time over whole clock periods. Code ``c`` covers the
    fraction ``hist[c] / sum(hist)`` of a period; its centre is
    ``units_per_cycle * (sum(hist[:c]) + hist[c] / 2) / sum(hist)`` tagger units after the
    earliest detectable hit. Returns ``int64[len(hist)]`` (rounded). Codes never hit get the
    edge of their neighbours (they are never produced either).

    Raises ``ValueError`` naming ``hist`` when it is not a 1-D non-negative integer array with
    at least one count.
    """
    h = np.asarray(hist)
    if h.ndim != 1 or h.size < 2:
        raise ValueError(f"hist must be a 1-D array of at least 2 codes, not shape {h.shape!r}")
    if not np.issubdtype(h.dtype, np.integer):
        raise ValueError(f"hist must hold integer counts, not dtype {h.dtype!r}")
    if (h < 0).any():
        raise ValueError("hist must be non-negative, not containing "
                         f"{int(h[h < 0][0])!r}")
    total = int(h.sum())
    if total == 0:
        raise ValueError("hist must contain at least one hit, not all zeros")
    cum = np.concatenate([[0], np.cumsum(h)[:-1]]).astype(float)
    centre = units_per_cycle * (cum + h / 2) / total
    return np.rint(centre).astype(np.int64)


def dnl_inl(hist):
    """DNL and INL in LSB of a code-density histogram over the codes that were hit.

    Returns ``(dnl, inl)``: ``dnl[c] = w_c / mean(w) - 1`` and ``inl`` its running sum (end-point
    of each bin relative to the ideal uniform line), over the range of occupied codes.
    """
    h = np.asarray(hist, dtype=float)
    nz = np.nonzero(h)[0]
    if nz.size == 0:
        raise ValueError("hist must contain at least one hit, not all zeros")
    h = h[nz[0]:nz[-1] + 1]
    dnl = h / h.mean() - 1
    inl = np.cumsum(dnl)
    return dnl, inl
