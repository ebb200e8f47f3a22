"""LoopCore: lock monitor + loop filter + actuator stage shared by every loop.

Per error sample (one transfer on ``i``)::

    if valid:  (state, offset, mon_hold, mon_clear) = monitor.step(mon, y_last)
    y        = filter.step(err, hold = hold | mon_hold | ~valid, clear = clear | mon_clear)
    target   = offset + y          (wrapped to out_width when filter.wrap, else saturated)
    act      = act_prev + clamp(target - act_prev, -slew, slew)   (slew = 0: act = target)

and ``act`` goes out on ``o``. ``y_last`` is the filter output of the previous sample. The
model, :class:`LoopCoreModel`, composes :class:`LoopFilterModel` and :class:`LockMonitorModel`
the same way, so a loop built on this core is exactly its model.

Members
-------
i : In(stream.Signature({err: signed(err_width), mon: signed(mon_width), valid: 1}))
    ``err`` feeds the filter, ``mon`` the lock monitor (often the same quantity, wrapped for
    phase loops); ``valid = 0`` holds both (e.g. a reference period without enough clicks).
o : Out(stream.Signature(signed(out_width)))
    Actuator word, one per input sample; :data:`LATENCY` cycles after the input transfer.
locked : Out(1)
clear_out : Out(1)
    Pulses when the filter is cleared (register ``clear`` or a relock sweep): loops use it to
    re-zero their detector (OPLL ``clear_turns``).

Registers
---------
``filter.*`` (all of :class:`LoopFilter` except ``hold``/``clear``), ``monitor.*`` (all of
:class:`LockMonitor`), ``hold`` (RW 1), ``clear`` (W1P 1), ``slew`` (RW, out_width - 1 bits,
actuator LSB per sample, 0 = unlimited), ``act`` (R, signed, the last actuator word).

Timing: one sample in flight, ``i.ready`` high when idle; throughput one sample per
``LATENCY + 1`` cycles at most.
"""
import dataclasses

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..dsp.common import check_int, forward_registers, prefixed, reg_members, sat, wrap_int
from ..dsp.lock_monitor import LATENCY as MONITOR_LATENCY
from ..dsp.lock_monitor import LockMonitor, LockMonitorConfig, LockMonitorModel
from ..dsp.loop_filter import LATENCY as FILTER_LATENCY
from ..dsp.loop_filter import LoopFilter, LoopFilterConfig, LoopFilterModel
from ..regs import Access, Reg

__all__ = ["LoopCore", "LoopCoreModel", "LoopCoreConfig", "LATENCY"]

#: cycles from the input transfer to ``o.valid``.
LATENCY = FILTER_LATENCY + MONITOR_LATENCY + 8


@dataclasses.dataclass(frozen=True)
class LoopCoreConfig:
    """Register values of a :class:`LoopCore`."""

    filter: LoopFilterConfig = LoopFilterConfig()
    monitor: LockMonitorConfig = LockMonitorConfig()
    slew: int = 0
    hold: int = 0

    def registers(self):
        """``{register name: value}`` for every RW register of the core (host helper)."""
        out = {f"filter.{k}": v for k, v in dataclasses.asdict(self.filter).items()}
        out.update({f"monitor.{k}": v for k, v in dataclasses.asdict(self.monitor).items()})
        out.update(slew=self.slew, hold=self.hold)
        return out


class LoopCoreModel:
    """Bit-exact model of :class:`LoopCore`; :meth:`step` per sample."""

    def __init__(self, cfg, *, err_width=18, mon_width=18, out_width=18, coef_frac=16):
        self.cfg = cfg
        self.out_width = out_width
        check_int("slew", cfg.slew, 0, (1 << (out_width - 1)) - 1)
        self.filter = LoopFilterModel(cfg.filter, in_width=err_width, out_width=out_width,
                                      coef_frac=coef_frac)
        self.monitor = LockMonitorModel(cfg.monitor, err_width=mon_width, out_width=out_width)
        self.y_last = 0
        self.act = 0
        self.hold = bool(cfg.hold)

    @property
    def locked(self):
        return self.monitor.state == 1

    def step(self, err, mon, valid=True, clear=False):
        """Process one sample; return ``(act, cleared)``."""
        mon_hold = mon_clear = False
        if valid:
            _, _, mon_hold, mon_clear = self.monitor.step(mon, self.y_last)
        cleared = clear or mon_clear
        y, _ = self.filter.step(err, hold=self.hold or mon_hold or not valid, clear=cleared)
        self.y_last = y
        t = self.monitor.offset + y
        ow = self.out_width
        t = wrap_int(t, ow) if self.cfg.filter.wrap else \
            min(max(t, -(1 << (ow - 1))), (1 << (ow - 1)) - 1)
        s = self.cfg.slew
        if s:
            d = min(max(t - self.act, -s), s)
            t = self.act + d
        self.act = t
        return t, cleared


class LoopCore(wiring.Component):
    """Lock monitor + loop filter + offset/slew stage (see the module docstring).

    Parameters
    ----------
    err_width : int
        Filter input width (2..18).
    mon_width : int
        Monitor input width (2..32).
    out_width : int
        Actuator word width (2..32).
    coef_frac : int
        Fractional bits of the filter's numerator coefficients.
    dsp_primitive : bool
        Use ``MULT18X18D`` instances (synthesis); see :func:`..dsp.common.mult18`.
    """

    def __init__(self, *, err_width=18, mon_width=18, out_width=18, coef_frac=16,
                 dsp_primitive=False):
        check_int("err_width", err_width, 2, 18)
        self.err_width, self.mon_width, self.out_width = err_width, mon_width, out_width
        self.coef_frac = coef_frac
        self.filter = LoopFilter(in_width=err_width, out_width=out_width, coef_frac=coef_frac,
                                 dsp_primitive=dsp_primitive)
        self.monitor = LockMonitor(err_width=mon_width, out_width=out_width)
        self.latency = LATENCY
        self.in_layout = data.StructLayout({"err": signed(err_width), "mon": signed(mon_width),
                                            "valid": 1})
        members = {"i": In(stream.Signature(self.in_layout)),
                   "o": Out(stream.Signature(signed(out_width))),
                   "locked": Out(1), "clear_out": Out(1)}
        members.update(reg_members(self.registers()))
        super().__init__(members)

    def registers(self):
        ow = self.out_width
        own = [r for r in self.filter.registers() if r.name not in ("hold", "clear")]
        return (prefixed("filter", own) + prefixed("monitor", self.monitor.registers()) + [
            Reg("hold", 1, doc="1: hold the loop filter output."),
            Reg("clear", 1, Access.W1P, doc="Write 1: clear the loop filter state."),
            Reg("slew", ow - 1, doc="Max actuator change per sample, LSB (0: unlimited)."),
            Reg("act", ow, Access.R, signed=True, doc="Last actuator word."),
        ])

    def elaborate(self, platform):
        m = Module()
        ow = self.out_width
        m.submodules.filter = flt = self.filter
        m.submodules.monitor = mon = self.monitor
        forward_registers(m, self, "filter", flt, skip=("hold", "clear"))
        forward_registers(m, self, "monitor", mon)
        m.d.comb += self.locked.eq(mon.locked)

        err = Signal(signed(self.err_width))
        mon_e = Signal(signed(self.mon_width))
        valid = Signal()
        y_last = Signal(signed(ow))
        t = Signal(signed(ow + 1))
        target = Signal(signed(ow))
        d = Signal(signed(ow + 2))
        plus = Signal(signed(ow + 1))
        minus = Signal(signed(ow + 1))
        mon_hold = Signal()
        mon_clear = Signal()
        above = Signal()
        below = Signal()
        no_slew = Signal()
        m.d.comb += flt.clear.eq(self.clear)
        with m.If(self.clear):
            m.d.comb += self.clear_out.eq(1)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [err.eq(self.i.payload.err), mon_e.eq(self.i.payload.mon),
                                 valid.eq(self.i.payload.valid),
                                 mon_hold.eq(0), mon_clear.eq(0)]
                    m.next = "START"
            with m.State("START"):
                # the monitor's input comes from registers, not from the upstream handshake
                m.d.comb += [mon.i.valid.eq(valid), mon.i.payload.err.eq(mon_e),
                             mon.i.payload.act.eq(y_last)]
                with m.If(valid):
                    m.next = "MON"
                with m.Else():
                    m.next = "PUSH"
            with m.State("MON"):
                with m.If(mon.done):
                    m.d.sync += [mon_hold.eq(mon.hold), mon_clear.eq(mon.clear)]
                    m.next = "PUSH"
            with m.State("PUSH"):
                m.d.comb += [flt.i.valid.eq(1), flt.i.payload.eq(err),
                             flt.hold.eq(self.hold | mon_hold | ~valid),
                             flt.clear.eq(self.clear | mon_clear)]
                with m.If(mon_clear):
                    m.d.comb += self.clear_out.eq(1)
                with m.If(flt.i.ready):
                    m.next = "FILT"
            with m.State("FILT"):
                m.d.comb += flt.o.ready.eq(1)
                with m.If(flt.o.valid):
                    m.d.sync += [y_last.eq(flt.o.payload.y),
                                 t.eq(mon.offset + flt.o.payload.y)]
                    m.next = "LIMIT"
            with m.State("LIMIT"):
                m.d.sync += target.eq(Mux(flt.wrap, t[:ow].as_signed(), sat(t, ow)))
                m.next = "SLEW"
            with m.State("SLEW"):
                m.d.sync += [d.eq(target - self.act), plus.eq(self.act + self.slew),
                             minus.eq(self.act - self.slew)]
                m.next = "CMP"
            with m.State("CMP"):
                # d > slew and d < -slew as the signs of one subtraction / addition each
                m.d.sync += [above.eq((self.slew - d)[-1]), below.eq((d + self.slew)[-1]),
                             no_slew.eq(self.slew == 0)]
                m.next = "ACT"
            with m.State("ACT"):
                lim = Mux(above, plus, Mux(below, minus, target))
                m.d.sync += [self.act.eq(Mux(no_slew, target, lim)), self.o.valid.eq(1)]
                m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.o.payload.eq(self.act)
                with m.If(self.o.ready):
                    m.d.sync += self.o.valid.eq(0)
                    m.next = "IDLE"
        return m
