"""RepRateLock: comb repetition-rate lock by the microring heater (seed 003).

``gate counts (FreqCounter) -> err = sat(count - target) -> LoopCore -> slew-limited heater``.

The beat ``dOmega_r`` (offset to an IF, see :mod:`..dsp.freq_counter`) is counted in gates of
``G`` clock cycles; ``target`` is the count at the wanted repetition rate. One count is
``f_clk / G`` Hz of beat frequency. The heater is slow and must not be kicked: the core's
``slew`` register limits the heater word's change per gate, and the filter limits bound its
travel (seed 003 uses under 150 mK of heater travel over 3 hours).

Members
-------
i : In(stream.Signature(unsigned(count_width)))    Gate counts.
o : Out(stream.Signature(signed(out_width)))       Heater word (signed; a unipolar DAC takes
    it offset-binary, ``word ^ (1 << (out_width - 1))``).
locked : Out(1)

Registers: ``target`` (RW, count_width bits) and the :class:`LoopCore` registers.
"""
import numpy as np
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..dsp.common import check_int, forward_registers, reg_members, sat, sat_int
from ..regs import Reg
from .core import LoopCore, LoopCoreModel

__all__ = ["RepRateLock", "RepRateLockModel"]

ERR_WIDTH = 18


class RepRateLockModel:
    """Bit-exact model of :class:`RepRateLock`: :meth:`update` per gate count."""

    def __init__(self, core_cfg, *, target, count_width=24, out_width=16, coef_frac=12):
        check_int("target", target, 0, (1 << count_width) - 1)
        self.target = target
        self.core = LoopCoreModel(core_cfg, err_width=ERR_WIDTH, mon_width=ERR_WIDTH,
                                  out_width=out_width, coef_frac=coef_frac)

    def update(self, count):
        err = sat_int(int(count) - self.target, ERR_WIDTH)
        act, _ = self.core.step(err, err)
        return act

    def run(self, counts):
        return np.array([self.update(c) for c in counts], np.int64)


class RepRateLock(wiring.Component):
    """Repetition-rate lock (see the module docstring).

    Parameters
    ----------
    count_width : int
        Width of the gate counts, 2..32.
    out_width, coef_frac, dsp_primitive
        As :class:`LoopCore`.
    """

    def __init__(self, *, count_width=24, out_width=16, coef_frac=12, dsp_primitive=False):
        check_int("count_width", count_width, 2, 32)
        self.count_width = count_width
        self.core = LoopCore(err_width=ERR_WIDTH, mon_width=ERR_WIDTH, out_width=out_width,
                             coef_frac=coef_frac, dsp_primitive=dsp_primitive)
        members = {"i": In(stream.Signature(count_width)),
                   "o": Out(stream.Signature(signed(out_width))),
                   "locked": Out(1)}
        members.update(reg_members(self.registers()))
        super().__init__(members)

    def registers(self):
        return [Reg("target", self.count_width, doc="Gate count at the wanted rep rate.")] + \
            self.core.registers()

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        forward_registers(m, self, "", core)
        wiring.connect(m, wiring.flipped(self.o), core.o)
        cnt = Signal(self.count_width)
        diff = Signal(signed(self.count_width + 1))
        err = Signal(signed(ERR_WIDTH))
        m.d.comb += [core.i.payload.err.eq(err), core.i.payload.mon.eq(err),
                     core.i.payload.valid.eq(1), self.locked.eq(core.locked)]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += cnt.eq(self.i.payload)
                    m.next = "SUB"
            with m.State("SUB"):
                m.d.sync += diff.eq(cnt - self.target)
                m.next = "SAT"
            with m.State("SAT"):
                m.d.sync += err.eq(sat(diff, ERR_WIDTH))
                m.next = "PUSH"
            with m.State("PUSH"):
                m.d.comb += core.i.valid.eq(1)
                with m.If(core.i.ready):
                    m.next = "IDLE"
        return m
