"""Gated, dead-time-free frequency counter for the repetition-rate beat.

The comb's first-order sideband beat ``dOmega_r = Omega_RF - Omega_rep`` (seed 003), offset to
an intermediate frequency so that its sign is resolved, is squared by a comparator and
synchronised to the FPGA clock (outside this block). The counter counts rising edges of that
1-bit signal in consecutive gates of ``gate_cycles`` clock cycles with no dead time between
gates, so the sum of any run of counts is the exact number of beat cycles (a phase measurement:
the quantisation error of one gate is carried into the next, it does not accumulate).

Members
-------
beat : In(1)
    Synchronised comparator output.
o : Out(stream.Signature(unsigned(count_width)))
    One count per gate: rising edges seen in cycles ``[j*G, (j+1)*G)`` (``G = gate_cycles``);
    frequency ``= count * f_clk / G``. Saturates at ``2**count_width - 1``.
gate_cycles : In(32)
    RW register, gate length in clock cycles, >= 1 (0 counts as ``2**32``); set it before
    the count starts (a change takes effect one cycle late).
overruns, count_overflows : Out(32)
    R registers: counts lost because ``o`` was not ready; gates whose count saturated.

Timing: the count of gate ``j`` is on ``o`` one cycle after the gate's last cycle.
"""
import numpy as np
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..regs import Access, Reg
from .common import check_int, reg_members

__all__ = ["FreqCounter", "freq_counter_model", "counts_from_phase", "GATE_RESET"]

#: reset value of ``gate_cycles`` (10 ms at 100 MHz).
GATE_RESET = 1_000_000


def freq_counter_model(beat, gate_cycles, count_width=24):
    """Bit-exact model: counts of every complete gate of the sampled ``beat`` bits."""
    check_int("gate_cycles", gate_cycles, 1, (1 << 32) - 1)
    check_int("count_width", count_width, 1, 32)
    b = np.asarray(beat, np.int64) & 1
    prev = np.concatenate([[0], b[:-1]])
    edges = b & (1 - prev)
    n = len(b) // gate_cycles
    counts = edges[:n * gate_cycles].reshape(n, gate_cycles).sum(axis=1)
    return np.minimum(counts, (1 << count_width) - 1)


def counts_from_phase(theta_end, count_width=24):
    """Counts the counter reports for a beat of phase ``theta`` (cycles), in closed form.

    For the square wave ``b[k] = frac(theta_k) < 1/2`` (beat below half the clock rate) a rising
    edge falls on every sample where ``floor(theta)`` steps up, so the count of a gate is
    ``floor(theta)`` at its last sample minus ``floor(theta)`` at the previous gate's last
    sample. ``theta_end`` holds the phase at the last sample of gates ``-1, 0, 1, ...``; the
    result has one count per gate (``len(theta_end) - 1``). This is what lets a co-simulation
    produce the counter's exact output without simulating every clock cycle (the tests check it
    against :func:`freq_counter_model`).
    """
    f = np.floor(np.asarray(theta_end, float)).astype(np.int64)
    return np.minimum(np.diff(f), (1 << count_width) - 1)


class FreqCounter(wiring.Component):
    """Gated edge counter (see the module docstring).

    Parameters
    ----------
    count_width : int
        Width of the count, 1..32.
    """

    def __init__(self, *, count_width=24):
        check_int("count_width", count_width, 1, 32)
        self.count_width = count_width
        members = {"beat": In(1), "o": Out(stream.Signature(count_width))}
        members.update(reg_members(self.registers()))
        super().__init__(members)

    def registers(self):
        return [
            Reg("gate_cycles", 32, reset=GATE_RESET, doc="Gate length, clock cycles (>= 1)."),
            Reg("overruns", 32, Access.R, doc="Counts lost because o was not ready (wraps)."),
            Reg("count_overflows", 32, Access.R, doc="Gates whose count saturated (wraps)."),
        ]

    def elaborate(self, platform):
        m = Module()
        cw = self.count_width
        top = (1 << cw) - 1
        prev = Signal()
        timer = Signal(32)
        count = Signal(cw)
        flag = Signal()
        edge = self.beat & ~prev
        m.d.sync += prev.eq(self.beat)
        nxt = Signal(cw + 1)
        m.d.comb += nxt.eq(count + edge)
        full = nxt > top
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        last = Signal(32, init=GATE_RESET - 1)
        m.d.sync += last.eq(self.gate_cycles - 1)     # the register is static in use
        with m.If(timer == last):
            m.d.sync += [timer.eq(0), count.eq(0), flag.eq(0), self.o.valid.eq(1),
                         self.o.payload.eq(nxt[:cw] | full.replicate(cw))]
            with m.If(full | flag):
                m.d.sync += self.count_overflows.eq(self.count_overflows + 1)
            with m.If(self.o.valid & ~self.o.ready):
                m.d.sync += self.overruns.eq(self.overruns + 1)
        with m.Else():
            m.d.sync += timer.eq(timer + 1)
            with m.If(full):
                m.d.sync += flag.eq(1)
            with m.Else():
                m.d.sync += count.eq(nxt)
        return m
