"""PhaseCompensator: TF-QKD phase tracking, reference estimator -> loop filter -> phase actuator.

``RefEvent stream -> RefPhaseEstimator -> LoopCore (wrap mode) -> phase actuator word``.

Each reference period gives a phase estimate (``signed(16)`` turns); it is the filter input
and the lock monitor input, and a period without a valid estimate (too few clicks) holds the
loop. The filter runs in wrap mode: the actuator word is a phase in turns modulo one turn
(``signed(out_width)``, ``/ 2**out_width`` turns), for a phase modulator driven through a DAC
with 2 pi resets, so the loop never runs out of range. A type-2 filter
(:func:`..dsp.loop_filter.pi2_coefficients`) follows a constant drift rate (seed 000: up to
4.1 rad/ms) with no steady-state error.

Every estimate, with its four counts, is also copied to ``est`` for the host (post-selection of
X-window pairs by phase); estimates the host does not take in time are counted in ``est_drops``.

Members
-------
i : In(stream.Signature(RefEvent))
o : Out(stream.Signature(signed(out_width)))      Phase actuator word.
est : Out(stream.Signature(ref_estimate_layout(count_width)))
locked : Out(1)

Registers: ``est.*`` (:class:`RefPhaseEstimator`), ``est_drops`` (R 32) and the
:class:`LoopCore` registers.
"""
from amaranth.hdl import Module, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..dsp.common import forward_registers, prefixed, reg_members
from ..dsp.ref_phase import (
    PHASE_BITS,
    RefEvent,
    RefPhaseEstimator,
    RefPhaseModel,
    ref_estimate_layout,
)
from ..regs import Access, Reg
from .core import LoopCore, LoopCoreModel

__all__ = ["PhaseCompensator", "PhaseCompensatorModel"]


class PhaseCompensatorModel:
    """Bit-exact model of :class:`PhaseCompensator`: :meth:`update` per reference period."""

    def __init__(self, core_cfg, *, min_counts=1, count_width=16, out_width=16, coef_frac=16):
        self.est = RefPhaseModel(min_counts=min_counts, count_width=count_width)
        self.core = LoopCoreModel(core_cfg, err_width=PHASE_BITS, mon_width=PHASE_BITS,
                                  out_width=out_width, coef_frac=coef_frac)
        self.estimates = []

    def update(self, n0a, n1a, n0b, n1b):
        """One reference period's click counts; return the actuator word."""
        e = self.est.period(n0a, n1a, n0b, n1b)
        self.estimates.append(e)
        act, _ = self.core.step(e["phase"], e["phase"], valid=bool(e["valid_est"]))
        return act


class PhaseCompensator(wiring.Component):
    """TF-QKD phase compensator (see the module docstring).

    Parameters
    ----------
    count_width : int
        Click counter width of the estimator.
    out_width, coef_frac, dsp_primitive
        As :class:`LoopCore`.
    """

    def __init__(self, *, count_width=16, out_width=16, coef_frac=16, dsp_primitive=False):
        self.estimator = RefPhaseEstimator(count_width=count_width)
        self.core = LoopCore(err_width=PHASE_BITS, mon_width=PHASE_BITS, out_width=out_width,
                             coef_frac=coef_frac, dsp_primitive=dsp_primitive)
        self.est_layout = ref_estimate_layout(count_width)
        members = {"i": In(stream.Signature(RefEvent)),
                   "o": Out(stream.Signature(signed(out_width))),
                   "est": Out(stream.Signature(self.est_layout)),
                   "locked": Out(1)}
        members.update(reg_members(self.registers()))
        super().__init__(members)

    def registers(self):
        return (prefixed("est", self.estimator.registers())
                + [Reg("est_drops", 32, Access.R, doc="Estimates the host missed (wraps).")]
                + self.core.registers())

    def elaborate(self, platform):
        m = Module()
        m.submodules.estimator = est = self.estimator
        m.submodules.core = core = self.core
        forward_registers(m, self, "est", est)
        forward_registers(m, self, "", core)
        wiring.connect(m, wiring.flipped(self.i), est.i)
        wiring.connect(m, wiring.flipped(self.o), core.o)
        p = est.o.payload
        take = est.o.valid & core.i.ready
        m.d.comb += [core.i.valid.eq(est.o.valid), est.o.ready.eq(core.i.ready),
                     core.i.payload.err.eq(p.phase), core.i.payload.mon.eq(p.phase),
                     core.i.payload.valid.eq(p.valid_est), self.locked.eq(core.locked)]
        with m.If(self.est.valid & self.est.ready):
            m.d.sync += self.est.valid.eq(0)
        with m.If(take):
            m.d.sync += [self.est.valid.eq(1), self.est.payload.eq(p)]
            with m.If(self.est.valid & ~self.est.ready):
                m.d.sync += self.est_drops.eq(self.est_drops + 1)
        return m
