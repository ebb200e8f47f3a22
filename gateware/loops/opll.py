"""OPLL: digital optical phase-locked loop on a beat note at an intermediate frequency.

``ADC samples -> PhaseDetector (NCO, I/Q, decimate, CORDIC, unwrap) -> LoopCore -> actuator``.

The filter input is the unwrapped phase relative to the NCO, ``err = sat(phase >> err_shift,
18)``: with the default ``err_shift = 4`` one LSB is ``2**-12`` turn and the range is +-32 turns,
so the loop pulls in frequency offsets like a phase-frequency detector until the actuator or the
demodulator bandwidth (``+-f_s / (2R)``) runs out. The lock monitor sees the wrapped phase
(``signed(16)`` turns), so lock means a small phase error, not just a small frequency error.
When the core clears the filter (register or relock sweep) the detector drops its whole turns.

Members
-------
i : In(stream.Signature(signed(adc_width)))      ADC samples.
o : Out(stream.Signature(signed(out_width)))     Actuator word (laser current / piezo DAC), one
    per ``R = 2**decim_log2`` samples.
locked : Out(1)

Registers: ``pd.*`` (:class:`PhaseDetector`) and the :class:`LoopCore` registers.

Timing: ``R >= 16`` so that the core (:data:`core.LATENCY` + 1 cycles per sample) keeps up.
"""
import numpy as np
from amaranth.hdl import Module, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..dsp.common import check_int, forward_registers, prefixed, reg_members, sat, sat_int
from ..dsp.phase_detector import PhaseDetector, PhaseDetectorModel
from .core import LoopCore, LoopCoreModel

__all__ = ["OPLL", "OPLLModel"]

MON_WIDTH = 16


class OPLLModel:
    """Bit-exact model of :class:`OPLL`: :meth:`update` per block of ``R`` ADC samples."""

    def __init__(self, core_cfg, *, ftw, adc_width=14, decim_log2=5, turn_bits=12,
                 err_shift=4, out_width=16, coef_frac=16):
        self.pd = PhaseDetectorModel(ftw=ftw, adc_width=adc_width, decim_log2=decim_log2,
                                     turn_bits=turn_bits)
        self.core = LoopCoreModel(core_cfg, err_width=18, mon_width=MON_WIDTH,
                                  out_width=out_width, coef_frac=coef_frac)
        self.err_shift = err_shift
        self.last_phase = 0

    def update(self, x):
        """Feed one block of ``R`` samples; return the actuator word it produces."""
        phase, _ = self.pd.feed(x)
        if len(phase) != 1:
            raise ValueError(f"update() takes one decimation block, not {len(x)!r} samples")
        p = int(phase[0])
        self.last_phase = p
        err = sat_int(p >> self.err_shift, 18)
        mon = ((p + (1 << 15)) & 0xFFFF) - (1 << 15)
        act, cleared = self.core.step(err, mon)
        if cleared:
            self.pd.clear_turns()
        return act

    def run(self, x):
        """Feed a whole number of blocks; return the actuator words."""
        r = 1 << self.pd.decim_log2
        return np.array([self.update(x[k:k + r]) for k in range(0, len(x), r)], np.int64)


class OPLL(wiring.Component):
    """Optical phase-locked loop (see the module docstring).

    Parameters
    ----------
    adc_width, decim_log2, turn_bits : int
        As :class:`PhaseDetector` (``decim_log2 >= 4``).
    err_shift : int
        Right shift of the unwrapped phase (16 fractional bits) into the 18-bit filter input.
    out_width, coef_frac, dsp_primitive
        As :class:`LoopCore`.
    """

    def __init__(self, *, adc_width=14, decim_log2=5, turn_bits=12, err_shift=4, out_width=16,
                 coef_frac=16, dsp_primitive=False):
        check_int("decim_log2", decim_log2, 4, 16)
        check_int("err_shift", err_shift, 0, 31)
        self.err_shift = err_shift
        self.pd = PhaseDetector(adc_width=adc_width, decim_log2=decim_log2,
                                turn_bits=turn_bits, dsp_primitive=dsp_primitive)
        self.core = LoopCore(err_width=18, mon_width=MON_WIDTH, out_width=out_width,
                             coef_frac=coef_frac, dsp_primitive=dsp_primitive)
        members = {"i": In(stream.Signature(signed(adc_width))),
                   "o": Out(stream.Signature(signed(out_width))),
                   "locked": Out(1)}
        members.update(reg_members(self.registers()))
        super().__init__(members)

    def registers(self):
        return prefixed("pd", self.pd.registers()) + self.core.registers()

    def elaborate(self, platform):
        m = Module()
        m.submodules.pd = pd = self.pd
        m.submodules.core = core = self.core
        forward_registers(m, self, "pd", pd, skip=("clear_turns",))
        forward_registers(m, self, "", core)
        m.d.comb += pd.clear_turns.eq(self.pd__clear_turns | core.clear_out)
        wiring.connect(m, wiring.flipped(self.i), pd.i)
        wiring.connect(m, wiring.flipped(self.o), core.o)
        p = pd.o.payload.phase
        m.d.comb += [core.i.valid.eq(pd.o.valid), pd.o.ready.eq(core.i.ready),
                     core.i.payload.err.eq(sat(p >> self.err_shift, 18)),
                     core.i.payload.mon.eq(p[:MON_WIDTH].as_signed()),
                     core.i.payload.valid.eq(1), self.locked.eq(core.locked)]
        return m
