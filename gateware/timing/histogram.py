"""Singles counters, start-stop histogram and slot-phase histogram.

Input ``a: In(stream.Signature(Annotated, always_ready=True))``: annotated clicks from
:class:`~.classifier.SlotClassifier` (one per cycle at most; nothing is ever refused).

* **Singles**: ``singles_<c>`` (R 32, wrapping) counts clicks of channel ``c``.
* **Start-stop histogram** (HOM dips, channel alignment): each click of channel ``ss_start``
  becomes the start; each later click of ``ss_stop`` adds the difference
  ``dt = t_stop - t_start`` (tagger units, ``T/38400``) in bin ``(dt - ss_offset) >> ss_shift``
  when it is in ``0 .. bins-1``. Differences of ``2**12`` clock cycles or more are ignored. A
  click on a channel that is both start and stop first stops, then restarts.
* **Slot-phase histogram** (arrival-time drift): clicks of ``ph_channel`` (32: every channel)
  add their slot phase in bin ``phase >> ph_shift``.

Readout: write ``hist_sel`` (0 start-stop, 1 phase) and ``hist_addr``, then read ``hist_data``
(R 32, the count; bins saturate at ``2**32 - 1``). ``hist_clear`` (W1P) zeroes both histograms
in ``bins`` cycles; clicks meanwhile are counted in ``hist_skipped`` (R 32) and not binned.
Registers: ``ss_start``, ``ss_stop`` (RW 5), ``ss_offset`` (RW 32 signed, units), ``ss_shift``
(RW 5), ``ph_channel`` (RW 6), ``ph_shift`` (RW 5), ``hist_sel`` (RW 1), ``hist_addr`` (RW 16),
``hist_data`` (R 32), ``hist_clear`` (W1P 1), ``hist_skipped`` (R 32), ``singles_<c>`` (R 32).
Increments are a pipelined read-modify-write (read issued, data registered, increment and
write) whose write stage takes the newer of the two writes still in flight when its bin matches
(forwarding), so clicks in one bin 1, 2 or more cycles apart are all counted. Latency from ``a``
to the bin written: 8 cycles (start-stop: register, dt, dt * units, minus offset, shift, range,
then read-modify-write), 5 (phase). ``hist_data`` is registered twice: read it three cycles
after writing ``hist_addr``. Clicks still in the pipeline when a clear starts are discarded with the
old contents. :func:`histogram_model` is a sequence model (latency does not enter it).
"""
import numpy as np
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..regs import Access, Reg
from .classifier import Annotated
from .tdc import UNITS_PER_CYCLE

__all__ = ["Histogrammer", "histogram_model", "HistConfig", "MAX_DC_BITS"]

MAX_DC_BITS = 12


class HistConfig:
    """Register values of :class:`Histogrammer` (used by the model and the host)."""

    def __init__(self, ss_start=0, ss_stop=1, ss_offset=0, ss_shift=0, ph_channel=32,
                 ph_shift=0):
        for name, v, hi in (("ss_start", ss_start, 31), ("ss_stop", ss_stop, 31),
                            ("ph_channel", ph_channel, 32), ("ss_shift", ss_shift, 31),
                            ("ph_shift", ph_shift, 31)):
            if not isinstance(v, (int, np.integer)) or not 0 <= v <= hi:
                raise ValueError(f"{name} must be an int in 0..{hi}, not {v!r}")
        if not -(1 << 31) <= ss_offset < 1 << 31:
            raise ValueError(f"ss_offset must fit in 32 bits signed, not {ss_offset!r}")
        self.ss_start, self.ss_stop, self.ss_offset = ss_start, ss_stop, ss_offset
        self.ss_shift, self.ph_channel, self.ph_shift = ss_shift, ph_channel, ph_shift


class Histogrammer(wiring.Component):
    """Singles, start-stop and slot-phase histograms (module docstring)."""

    def __init__(self, channels=16, bins=1024):
        if not isinstance(bins, int) or bins < 2 or bins & (bins - 1) or bins > 1 << 16:
            raise ValueError(f"bins must be a power of two in 2..65536, not {bins!r}")
        if not isinstance(channels, int) or not 1 <= channels <= 32:
            raise ValueError(f"channels must be an int in 1..32, not {channels!r}")
        self.channels, self.bins = channels, bins
        members = {"a": In(stream.Signature(Annotated, always_ready=True)),
                   "ss_start": In(5), "ss_stop": In(5), "ss_offset": In(32), "ss_shift": In(5),
                   "ph_channel": In(6), "ph_shift": In(5), "hist_sel": In(1),
                   "hist_addr": In(16), "hist_data": Out(32), "hist_clear": In(1),
                   "hist_skipped": Out(32)}
        for c in range(channels):
            members[f"singles_{c}"] = Out(32)
        super().__init__(members)

    def registers(self):
        regs = [Reg("ss_start", 5, Access.RW, 0, "Start channel of the start-stop histogram."),
                Reg("ss_stop", 5, Access.RW, 1, "Stop channel."),
                Reg("ss_offset", 32, Access.RW, 0, "dt of bin 0, tagger units.", signed=True),
                Reg("ss_shift", 5, Access.RW, 0, "Start-stop bin width 2**ss_shift units."),
                Reg("ph_channel", 6, Access.RW, 32, "Channel of the phase histogram (32: all)."),
                Reg("ph_shift", 5, Access.RW, 0, "Phase bin width 2**ph_shift units."),
                Reg("hist_sel", 1, Access.RW, 0, "Histogram read by hist_data: 0 ss, 1 phase."),
                Reg("hist_addr", 16, Access.RW, 0, "Bin read by hist_data."),
                Reg("hist_data", 32, Access.R, 0, "Count of bin hist_addr."),
                Reg("hist_clear", 1, Access.W1P, 0, "Zero both histograms."),
                Reg("hist_skipped", 32, Access.R, 0, "Clicks not binned during a clear.")]
        regs += [Reg(f"singles_{c}", 32, Access.R, 0, f"Clicks of channel {c}.")
                 for c in range(self.channels)]
        return regs

    def elaborate(self, platform):
        m = Module()
        nb = ceil_log2(self.bins)
        # h0: register the click.
        v0, ch0, co0, fi0, ph0 = Signal(), Signal(5), Signal(39), Signal(17), Signal(24)
        p = self.a.payload
        m.d.sync += [v0.eq(self.a.valid), ch0.eq(p.channel), co0.eq(p.coarse), fi0.eq(p.fine),
                     ph0.eq(p.phase)]
        for c in range(self.channels):
            cnt = getattr(self, f"singles_{c}")
            with m.If(v0 & (ch0 == c)):
                m.d.sync += cnt.eq(cnt + 1)

        clearing = Signal()
        clr = Signal(nb)
        with m.If(self.hist_clear):
            m.d.sync += [clearing.eq(1), clr.eq(0)]
        with m.Elif(clearing):
            m.d.sync += clr.eq(clr + 1)
            with m.If(clr == self.bins - 1):
                m.d.sync += clearing.eq(0)
        with m.If(v0 & (clearing | self.hist_clear)):
            m.d.sync += self.hist_skipped.eq(self.hist_skipped + 1)
        busy = clearing | self.hist_clear
        take = v0 & ~busy

        # Start-stop: h1 dc = coarse - start coarse, fs - fine; h2 dc * UNITS, minus offset;
        # h3 x = dt - offset; h4 x >> shift; h5 range check, bin address.
        have = Signal()
        cs, fs = Signal(39), Signal(17)
        v1, dc1 = Signal(), Signal(39)
        df1 = Signal(range(-(1 << 17), 1 << 17))
        m.d.sync += [v1.eq(take & have & (ch0 == self.ss_stop)), dc1.eq(co0 - cs),
                     df1.eq(fs - fi0)]
        with m.If(take & (ch0 == self.ss_start)):
            m.d.sync += [have.eq(1), cs.eq(co0), fs.eq(fi0)]
        v2, x2 = Signal(), Signal(MAX_DC_BITS + 16)
        y2 = Signal(range(-(1 << 34), 1 << 34))
        m.d.sync += [v2.eq(v1 & (dc1[MAX_DC_BITS:] == 0)),
                     x2.eq(dc1[:MAX_DC_BITS] * UNITS_PER_CYCLE),
                     y2.eq(df1 - self.ss_offset.as_signed())]
        v3 = Signal()
        x3 = Signal(range(-(1 << 45), 1 << 45))
        m.d.sync += [v3.eq(v2), x3.eq(x2 + y2)]
        v4 = Signal()
        b4 = Signal(range(-(1 << 45), 1 << 45))
        m.d.sync += [v4.eq(v3), b4.eq(x3 >> self.ss_shift)]
        v5, a5 = Signal(), Signal(nb)
        m.d.sync += [v5.eq(v4 & (b4 >= 0) & (b4 < self.bins)), a5.eq(b4[:nb])]

        # Slot phase: h1 phase >> shift, h2 range check.
        pv1, pb1 = Signal(), Signal(24)
        m.d.sync += [pv1.eq(take & ((self.ph_channel == 32) | (self.ph_channel == ch0))),
                     pb1.eq(ph0 >> self.ph_shift)]
        pv2, pa2 = Signal(), Signal(nb)
        m.d.sync += [pv2.eq(pv1 & (pb1 < self.bins)), pa2.eq(pb1[:nb])]

        data_out = []
        for name, hit, addr in (("ss", v5, a5), ("ph", pv2, pa2)):
            data_out.append(self._rmw(m, name, hit & ~busy, addr, clearing, clr))
        m.d.sync += self.hist_data.eq(Mux(self.hist_sel, data_out[1], data_out[0]))
        return m

    def _rmw(self, m, name, hit, addr, clearing, clr):
        """Pipelined increment of bin ``addr`` (R: read issued, M: data, W: write).

        The read misses the two writes still in flight; the W stage takes the newest of them
        instead when its address matches (forwarding), so back-to-back clicks in one bin count.
        """
        nb = ceil_log2(self.bins)
        mem = Memory(shape=32, depth=self.bins, init=[])
        m.submodules[f"{name}_mem"] = mem
        wp = mem.write_port()
        rp = mem.read_port()
        hp = mem.read_port()
        m.d.comb += [rp.addr.eq(addr), hp.addr.eq(self.hist_addr)]

        def sig(n, w=1):
            return Signal(w, name=f"{name}_{n}")

        vm, am = sig("vm"), sig("am", nb)
        m.d.sync += [vm.eq(hit), am.eq(addr)]
        vw, aw, dw = sig("vw"), sig("aw", nb), sig("dw", 32)
        l1v, l1a, l1d = sig("l1v"), sig("l1a", nb), sig("l1d", 32)
        l2v, l2a, l2d = sig("l2v"), sig("l2a", nb), sig("l2d", 32)
        f1, f2 = sig("f1"), sig("f2")
        m.d.sync += [vw.eq(vm), aw.eq(am), dw.eq(rp.data),
                     f1.eq(vw & ~clearing & (aw == am)), f2.eq(l1v & (l1a == am))]
        base = Mux(f1, l1d, Mux(f2, l2d, dw))
        new = sig("new", 32)
        m.d.comb += new.eq(Mux(base == 0xFFFF_FFFF, base, base + 1))
        wr = vw & ~clearing
        m.d.sync += [l1v.eq(wr), l1a.eq(aw), l1d.eq(new), l2v.eq(l1v), l2a.eq(l1a),
                     l2d.eq(l1d)]
        with m.If(clearing):
            m.d.comb += [wp.addr.eq(clr), wp.data.eq(0), wp.en.eq(1)]
        with m.Else():
            m.d.comb += [wp.addr.eq(aw), wp.data.eq(new), wp.en.eq(vw)]
        hq = sig("hq", 32)                      # the block RAM's output, registered
        m.d.sync += hq.eq(hp.data)
        return hq


def histogram_model(annotated, cfg, channels, bins):
    """Model of :class:`Histogrammer` over a click sequence (no clear in between).

    Returns ``(ss_hist, ph_hist, singles)`` as int64 arrays.
    """
    ss = np.zeros(bins, np.int64)
    ph = np.zeros(bins, np.int64)
    singles = np.zeros(channels, np.int64)
    start = None
    for a in annotated:
        ch = a["channel"]
        if ch < channels:
            singles[ch] += 1
        if ch == cfg.ss_stop and start is not None:
            dc = (a["coarse"] - start[0]) % (1 << 39)
            if dc < 1 << MAX_DC_BITS:
                x = dc * UNITS_PER_CYCLE - a["fine"] + start[1] - cfg.ss_offset
                b = x >> cfg.ss_shift
                if 0 <= b < bins:
                    ss[b] += 1
        if ch == cfg.ss_start:
            start = (a["coarse"], a["fine"])
        if cfg.ph_channel in (32, ch):
            b = a["phase"] >> cfg.ph_shift
            if b < bins:
                ph[b] += 1
    return ss, ph, singles
