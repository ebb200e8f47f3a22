"""Lock monitor: lock detection from the error, loss-of-lock counting, automatic relock sweep.

Per error sample ``e`` (with ``act``, the loop filter's current output):

* ``in = |e| <= threshold``; ``in_run`` counts consecutive in samples; ``out_run`` counts out
  samples since the last stretch of ``lock_samples`` consecutive in samples (both saturate at
  65535). So a loop that slips, whose wrapped phase still passes through the window now and
  then, is declared unlocked after ``unlock_samples`` out samples, while isolated noise samples
  of a good lock are forgotten at the next in-lock stretch.
* ``ACQUIRE`` (after reset, and after a capture): ``in_run >= lock_samples`` -> ``LOCKED``. With
  ``sweep_enable`` and ``acquire_timeout != 0``, ``acquire_timeout`` samples without locking
  start a sweep.
* ``LOCKED``: ``out_run >= unlock_samples`` is a loss of lock: ``loss_count += 1``, then a sweep
  (``sweep_enable``) or ``ACQUIRE``.
* ``SWEEP``: entered with ``offset = clamp(offset + act, sweep_min, sweep_max)`` (the actuator
  stays where it was) and a ``clear`` of the loop filter; while sweeping the filter is held and
  ``offset`` moves by ``sweep_step`` per sample, a triangle between ``sweep_min`` and
  ``sweep_max``. ``in_run >= capture_samples`` ends the sweep (-> ``ACQUIRE``), leaving
  ``offset`` where the capture happened. ``sweep_count += 1`` per sweep started.

The loop's actuator word is ``offset + filter output``.

Members
-------
i : In(stream.Signature({err: signed(err_width), act: signed(out_width)}))
    Ready when idle; the outputs below are updated :data:`LATENCY` cycles after the transfer,
    when ``done`` pulses (a five-stage pipeline, one sample in flight, for >= 150 MHz).
state : Out(2)       ``0`` ACQUIRE, ``1`` LOCKED, ``2`` SWEEP (also an R register).
offset : Out(signed(out_width))
hold, clear : Out(1)  Filter hold (in SWEEP) and the one-sample clear request, valid with
    ``done``.
done : Out(1)         One-cycle pulse: outputs updated for the last sample.

Registers
---------
``threshold`` (RW, err_width - 1 bits, error LSB), ``lock_samples``, ``unlock_samples``,
``capture_samples`` (RW 16), ``acquire_timeout`` (RW 32, samples, 0 = never), ``sweep_enable``
(RW 1), ``sweep_step`` (RW, out_width - 1 bits), ``sweep_min``, ``sweep_max`` (RW signed),
``state`` (R 2), ``locked`` (R 1), ``loss_count``, ``sweep_count`` (R 32).
"""
import dataclasses
import enum

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..regs import Access, Reg
from .common import check_int, reg_members

__all__ = ["LATENCY", "LockState", "LockMonitor", "LockMonitorConfig", "LockMonitorModel"]

RUN_MAX = (1 << 16) - 1
#: cycles from the input transfer to ``done``.
LATENCY = 6


class LockState(enum.IntEnum):
    ACQUIRE = 0
    LOCKED = 1
    SWEEP = 2


@dataclasses.dataclass(frozen=True)
class LockMonitorConfig:
    """Register values of a :class:`LockMonitor`."""

    threshold: int = 0
    lock_samples: int = 16
    unlock_samples: int = 16
    capture_samples: int = 4
    acquire_timeout: int = 0
    sweep_enable: int = 0
    sweep_step: int = 1
    sweep_min: int = 0
    sweep_max: int = 0

    def check(self, err_width, out_width):
        check_int("threshold", self.threshold, 0, (1 << (err_width - 1)) - 1)
        for name in ("lock_samples", "unlock_samples", "capture_samples"):
            check_int(name, getattr(self, name), 0, RUN_MAX)
        check_int("acquire_timeout", self.acquire_timeout, 0, (1 << 32) - 1)
        check_int("sweep_enable", self.sweep_enable, 0, 1)
        check_int("sweep_step", self.sweep_step, 0, (1 << (out_width - 1)) - 1)
        for name in ("sweep_min", "sweep_max"):
            check_int(name, getattr(self, name), -(1 << (out_width - 1)),
                      (1 << (out_width - 1)) - 1)
        if self.sweep_min > self.sweep_max:
            raise ValueError(f"sweep_min must be <= sweep_max, not {self.sweep_min!r} > "
                             f"{self.sweep_max!r}")
        return self


class LockMonitorModel:
    """Bit-exact model of :class:`LockMonitor`; :meth:`step` per sample."""

    def __init__(self, cfg, *, err_width=18, out_width=18):
        self.cfg = cfg.check(err_width, out_width)
        self.state = LockState.ACQUIRE
        self.in_run = self.out_run = 0
        self.acq_time = 0
        self.offset = 0
        self.up = True
        self.loss_count = self.sweep_count = 0

    def _enter_sweep(self, act):
        c = self.cfg
        self.state = LockState.SWEEP
        self.offset = min(max(self.offset + act, c.sweep_min), c.sweep_max)
        self.up = True
        self.sweep_count += 1
        return True

    def step(self, err, act):
        """Process one sample; return ``(state, offset, hold, clear)``."""
        c = self.cfg
        inside = abs(err) <= c.threshold
        self.in_run = min(self.in_run + 1, RUN_MAX) if inside else 0
        if inside:
            if self.in_run >= c.lock_samples:
                self.out_run = 0
        else:
            self.out_run = min(self.out_run + 1, RUN_MAX)
        clear = False
        if self.state == LockState.ACQUIRE:
            self.acq_time = min(self.acq_time + 1, (1 << 32) - 1)
            if self.in_run >= c.lock_samples:
                self.state = LockState.LOCKED
            elif c.sweep_enable and c.acquire_timeout and self.acq_time >= c.acquire_timeout:
                clear = self._enter_sweep(act)
        elif self.state == LockState.LOCKED:
            if self.out_run >= c.unlock_samples:
                self.loss_count += 1
                if c.sweep_enable:
                    clear = self._enter_sweep(act)
                else:
                    self.state = LockState.ACQUIRE
                    self.acq_time = 0
        else:
            if self.in_run >= c.capture_samples:
                self.state = LockState.ACQUIRE
                self.acq_time = 0
            elif self.up:
                self.offset += c.sweep_step
                if self.offset >= c.sweep_max:
                    self.offset, self.up = c.sweep_max, False
            else:
                self.offset -= c.sweep_step
                if self.offset <= c.sweep_min:
                    self.offset, self.up = c.sweep_min, True
        return int(self.state), self.offset, self.state == LockState.SWEEP, clear


class LockMonitor(wiring.Component):
    """Lock monitor (see the module docstring).

    Parameters
    ----------
    err_width : int
        Error sample width, 2..32.
    out_width : int
        Actuator word width, 2..32.
    """

    def __init__(self, *, err_width=18, out_width=18):
        check_int("err_width", err_width, 2, 32)
        check_int("out_width", out_width, 2, 32)
        self.err_width, self.out_width = err_width, out_width
        self.in_layout = data.StructLayout({"err": signed(err_width), "act": signed(out_width)})
        members = {"i": In(stream.Signature(self.in_layout)),
                   "offset": Out(signed(out_width)), "hold": Out(1), "clear": Out(1),
                   "done": Out(1)}
        members.update(reg_members(self.registers()))
        super().__init__(members)

    def registers(self):
        ew, ow = self.err_width, self.out_width
        return [
            Reg("threshold", ew - 1, doc="|error| <= threshold counts as in lock (error LSB)."),
            Reg("lock_samples", 16, reset=16, doc="Consecutive in-lock samples to declare lock."),
            Reg("unlock_samples", 16, reset=16,
                doc="Out samples since the last in-lock stretch: loss of lock."),
            Reg("capture_samples", 16, reset=4, doc="Consecutive in samples ending a sweep."),
            Reg("acquire_timeout", 32, doc="Samples in ACQUIRE before sweeping (0: never)."),
            Reg("sweep_enable", 1, doc="1: relock by sweeping the actuator."),
            Reg("sweep_step", ow - 1, reset=1, doc="Sweep step per sample, actuator LSB."),
            Reg("sweep_min", ow, signed=True, doc="Sweep lower bound, actuator LSB."),
            Reg("sweep_max", ow, signed=True, doc="Sweep upper bound, actuator LSB."),
            Reg("state", 2, Access.R, doc="0 ACQUIRE, 1 LOCKED, 2 SWEEP."),
            Reg("locked", 1, Access.R, doc="1 while LOCKED."),
            Reg("loss_count", 32, Access.R, doc="Loss-of-lock events (wraps)."),
            Reg("sweep_count", 32, Access.R, doc="Relock sweeps started (wraps)."),
        ]

    def elaborate(self, platform):
        m = Module()
        ow, ew = self.out_width, self.err_width
        in_run = Signal(16)
        out_run = Signal(16)
        acq = Signal(32)
        up = Signal(init=1)
        stage = Signal(5)          # one-hot pipeline position of the sample in flight
        m.d.comb += [self.i.ready.eq(stage == 0),
                     self.locked.eq(self.state == LockState.LOCKED),
                     self.hold.eq(self.state == LockState.SWEEP)]
        m.d.sync += [self.done.eq(0), self.clear.eq(0), stage.eq(stage << 1)]
        err = Signal(signed(ew))
        act = Signal(signed(ow))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [err.eq(self.i.payload.err), act.eq(self.i.payload.act), stage[0].eq(1)]
        # stage 1: |err|, entry point and sweep candidates
        mag = Signal(ew)
        entry = Signal(signed(ow + 1))
        up_next = Signal(signed(ow + 1))
        dn_next = Signal(signed(ow + 1))
        with m.If(stage[0]):
            m.d.sync += [mag.eq(Mux(err < 0, -err, err)), entry.eq(self.offset + act),
                         up_next.eq(self.offset + self.sweep_step),
                         dn_next.eq(self.offset - self.sweep_step)]
        # stage 2: comparisons, each the sign of one subtraction (a bare carry chain)
        inside = Signal()
        entry_lt = Signal()
        entry_gt = Signal()
        up_hit = Signal()
        dn_hit = Signal()
        with m.If(stage[1]):
            m.d.sync += [inside.eq(~(self.threshold - mag)[-1]),
                         entry_lt.eq((entry - self.sweep_min)[-1]),
                         entry_gt.eq((self.sweep_max - entry)[-1]),
                         up_hit.eq(~(up_next - self.sweep_max)[-1]),
                         dn_hit.eq(~(self.sweep_min - dn_next)[-1])]
        # stage 3: run lengths, acquisition timer, clamped entry point
        entry_c = Signal(signed(ow))
        lock_m1 = Signal(signed(17))
        m.d.sync += lock_m1.eq(self.lock_samples - 1)     # static register, precomputed
        with m.If(stage[2]):
            m.d.sync += [
                in_run.eq(Mux(inside, Mux(in_run == RUN_MAX, RUN_MAX, in_run + 1), 0)),
                out_run.eq(Mux(inside, Mux(in_run >= lock_m1, 0, out_run),
                               Mux(out_run == RUN_MAX, RUN_MAX, out_run + 1))),
                entry_c.eq(Mux(entry_lt, self.sweep_min,
                               Mux(entry_gt, self.sweep_max, entry))),
            ]
            with m.If(self.state == LockState.ACQUIRE):
                m.d.sync += acq.eq(Mux(acq == (1 << 32) - 1, acq, acq + 1))
        # stage 4: decisions
        f_lock = Signal()
        f_unlock = Signal()
        f_capture = Signal()
        f_timeout = Signal()
        with m.If(stage[3]):
            m.d.sync += [f_lock.eq(in_run >= self.lock_samples),
                         f_unlock.eq(out_run >= self.unlock_samples),
                         f_capture.eq(in_run >= self.capture_samples),
                         f_timeout.eq(self.sweep_enable & (self.acquire_timeout != 0)
                                      & (acq >= self.acquire_timeout))]

        # stage 5: state update
        def enter_sweep():
            m.d.sync += [self.state.eq(LockState.SWEEP), self.clear.eq(1), up.eq(1),
                         self.sweep_count.eq(self.sweep_count + 1), self.offset.eq(entry_c)]

        with m.If(stage[4]):
            m.d.sync += self.done.eq(1)
            with m.Switch(self.state):
                with m.Case(LockState.ACQUIRE):
                    with m.If(f_lock):
                        m.d.sync += self.state.eq(LockState.LOCKED)
                    with m.Elif(f_timeout):
                        enter_sweep()
                with m.Case(LockState.LOCKED):
                    with m.If(f_unlock):
                        m.d.sync += self.loss_count.eq(self.loss_count + 1)
                        with m.If(self.sweep_enable):
                            enter_sweep()
                        with m.Else():
                            m.d.sync += [self.state.eq(LockState.ACQUIRE), acq.eq(0)]
                with m.Default():
                    with m.If(f_capture):
                        m.d.sync += [self.state.eq(LockState.ACQUIRE), acq.eq(0)]
                    with m.Elif(up):
                        with m.If(up_hit):
                            m.d.sync += [self.offset.eq(self.sweep_max), up.eq(0)]
                        with m.Else():
                            m.d.sync += self.offset.eq(up_next)
                    with m.Else():
                        with m.If(dn_hit):
                            m.d.sync += [self.offset.eq(self.sweep_min), up.eq(1)]
                        with m.Else():
                            m.d.sync += self.offset.eq(dn_next)
        return m
