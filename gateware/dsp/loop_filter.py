"""PID / biquad IIR loop filter with setpoint, limits, anti-windup, hold, clear and sign.

Transfer function (per accepted sample ``n``)::

    e[n] = sat_W( s * (x[n] - setpoint) )           s = +1, or -1 when ``sign`` is set
    t[n] = b0*e[n] + b1*e[n-1] + b2*e[n-2] - a1*y[n-1] - a2*y[n-2]
    y[n] = clamp(t[n], lo, hi)    or    wrap(t[n])   when ``wrap`` is set
    out[n] = y[n] >> F                                (floor)

so ``H(z) = (b0 + b1 z^-1 + b2 z^-2) / (1 + a1 z^-1 + a2 z^-2)``. The numerator coefficients are
fractional (18-bit, one MULT18X18D each); the denominator coefficients are small integers
(3-bit signed, -4..3, built from shifts and adds, exact at any state width), which covers the
forms a loop filter needs: P/PI/PID in velocity form (``a1 = -1``, an integrator), PI^2 / type-2
(``a1 = -2, a2 = 1``, a double integrator, for phase ramps), and FIR (``a = 0``). Use
:func:`pid_coefficients` / :func:`pi2_coefficients` to convert gains.

Anti-windup: in clamp mode the *state* is the clamped output, so the integrator stops at the
limit and leaves it as soon as the error changes sign (no wind-up). Every clamped sample
increments ``sat_count``. In wrap mode the state wraps modulo ``2**(out_width + F)``: for
phase actuators whose word is a phase modulo one turn.

Formats
-------
* ``x``, ``setpoint``: ``signed(in_width)`` (``in_width <= 18``), the loop's error unit, LSB 1.
* ``b0, b1, b2``: ``signed(18)``, Q(17-F).F, i.e. value ``b / 2**F`` output LSB per input LSB
  (``F = coef_frac``, default 16: range [-2, 2)).
* ``a1, a2``: ``signed(3)``, integers -4..3.
* ``y`` state: ``signed(out_width + F)``: output LSB with ``F`` fractional bits.
* ``out_min, out_max``: ``signed(out_width)``; output ``signed(out_width)``.

Registers (``registers()``)
---------------------------
``setpoint``, ``b0``, ``b1``, ``b2``, ``a1``, ``a2``, ``out_min``, ``out_max`` (RW, signed);
``sign``, ``wrap``, ``hold`` (RW, 1 bit); ``clear`` (W1P: zero the state before the next sample);
``sat_count`` (R, 32 bits, clamped samples, wraps).

Hold: a sample accepted while ``hold`` is set leaves the state unchanged and outputs the held
``y[n-1] >> F``. Clear: the state (``e[n-1], e[n-2], y[n-1], y[n-2]``) is zeroed before the next
accepted sample (a ``clear`` pulse is remembered until then).

Timing: one sample in flight. ``i.ready`` is high when idle; the result is on ``o`` :data:`LATENCY`
cycles after the input transfer, and ``i.ready`` returns the cycle after ``o`` is taken. Each
multiplier is an 18x18 product with registered operands and a registered result (MULT18X18D);
every adder, the saturation and the clamp compare have their own pipeline stage (9 stages),
so that the block closes above 150 MHz on the ECP5 (see ``combkey bench loops``).
"""
import dataclasses

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..regs import Access, Reg
from .common import check_int, mult18, reg_members, sat, sat_int, wrap_int

__all__ = ["LoopFilter", "LoopFilterConfig", "LoopFilterModel", "loop_filter_model",
           "pid_coefficients", "pi2_coefficients", "COEF_WIDTH", "LATENCY"]

COEF_WIDTH = 18
#: cycles from the input transfer to ``o.valid``.
LATENCY = 9


@dataclasses.dataclass(frozen=True)
class LoopFilterConfig:
    """Register values of a :class:`LoopFilter` (see the module docstring for formats)."""

    b0: int = 0
    b1: int = 0
    b2: int = 0
    a1: int = -1
    a2: int = 0
    setpoint: int = 0
    out_min: int = -(1 << 17)
    out_max: int = (1 << 17) - 1
    sign: int = 0
    wrap: int = 0

    def check(self, in_width, out_width):
        """Raise ``ValueError`` naming the first field out of range for these widths."""
        for name in ("b0", "b1", "b2"):
            check_int(name, getattr(self, name), -(1 << 17), (1 << 17) - 1)
        for name in ("a1", "a2"):
            check_int(name, getattr(self, name), -4, 3)
        check_int("setpoint", self.setpoint, -(1 << (in_width - 1)), (1 << (in_width - 1)) - 1)
        for name in ("out_min", "out_max"):
            check_int(name, getattr(self, name), -(1 << (out_width - 1)),
                      (1 << (out_width - 1)) - 1)
        if self.out_min > self.out_max:
            raise ValueError(f"out_min must be <= out_max, not {self.out_min!r} > "
                             f"{self.out_max!r}")
        check_int("sign", self.sign, 0, 1)
        check_int("wrap", self.wrap, 0, 1)
        return self


def pid_coefficients(kp, ki, kd=0.0, coef_frac=16):
    """Velocity-form PID as filter coefficients ``dict(b0, b1, b2, a1, a2)``.

    ``kp``, ``ki`` (per sample) and ``kd`` (times one sample) are in output LSB per input LSB.
    ``y[n] = y[n-1] + kp*(e[n]-e[n-1]) + ki*e[n] + kd*(e[n]-2e[n-1]+e[n-2])``.
    """
    scale = 1 << coef_frac
    b = [kp + ki + kd, -kp - 2 * kd, kd]
    q = [int(round(v * scale)) for v in b]
    for name, v in zip(("b0", "b1", "b2"), q, strict=True):
        if not -(1 << 17) <= v < (1 << 17):
            raise ValueError(f"{name} must fit in 18 bits at coef_frac={coef_frac}, "
                             f"not {v!r} (kp={kp!r}, ki={ki!r}, kd={kd!r})")
    return dict(b0=q[0], b1=q[1], b2=q[2], a1=-1, a2=0)


def pi2_coefficients(kp, ki, ki2, coef_frac=16):
    """Type-2 loop filter (PI plus a second integrator) as coefficients.

    ``C(z) = kp + ki/(1 - z^-1) + ki2/(1 - z^-1)^2`` over ``(1 - z^-1)^2``: ``a1 = -2, a2 = 1``.
    A constant ramp of the disturbance then leaves no steady-state error.
    """
    scale = 1 << coef_frac
    b = [kp + ki + ki2, -2 * kp - ki, kp]
    q = [int(round(v * scale)) for v in b]
    for name, v in zip(("b0", "b1", "b2"), q, strict=True):
        if not -(1 << 17) <= v < (1 << 17):
            raise ValueError(f"{name} must fit in 18 bits at coef_frac={coef_frac}, "
                             f"not {v!r} (kp={kp!r}, ki={ki!r}, ki2={ki2!r})")
    return dict(b0=q[0], b1=q[1], b2=q[2], a1=-2, a2=1)


def _check_widths(in_width, out_width, coef_frac):
    check_int("in_width", in_width, 2, 18)
    check_int("out_width", out_width, 2, 32)
    check_int("coef_frac", coef_frac, 0, 24)


class LoopFilterModel:
    """Bit-exact model of :class:`LoopFilter`, one :meth:`step` per accepted sample."""

    def __init__(self, cfg, *, in_width=18, out_width=18, coef_frac=16):
        _check_widths(in_width, out_width, coef_frac)
        self.cfg = cfg.check(in_width, out_width)
        self.in_width, self.out_width, self.frac = in_width, out_width, coef_frac
        self.e1 = self.e2 = self.y1 = self.y2 = 0
        self.sat_count = 0

    @property
    def output(self):
        """Current output word (``y[n-1] >> F``)."""
        return self.y1 >> self.frac

    def clear(self):
        self.e1 = self.e2 = self.y1 = self.y2 = 0

    def step(self, x, hold=False, clear=False):
        """Process one sample; return ``(out, saturated)``."""
        c, F = self.cfg, self.frac
        if clear:
            self.clear()
        d = c.setpoint - x if c.sign else x - c.setpoint
        e = sat_int(d, self.in_width)
        if hold:
            return self.y1 >> F, False
        t = c.b0 * e + c.b1 * self.e1 + c.b2 * self.e2 - c.a1 * self.y1 - c.a2 * self.y2
        if c.wrap:
            y, saturated = wrap_int(t, self.out_width + F), False
        else:
            lo = c.out_min << F
            hi = (c.out_max << F) + (1 << F) - 1
            y = min(max(t, lo), hi)
            saturated = y != t
            self.sat_count += saturated
        self.e2, self.e1 = self.e1, e
        self.y2, self.y1 = self.y1, y
        return y >> F, saturated


def loop_filter_model(x, cfg, *, hold=None, clear=None, in_width=18, out_width=18,
                      coef_frac=16):
    """Run :class:`LoopFilterModel` over ``x``; return ``(out, saturated)`` int64 arrays."""
    mdl = LoopFilterModel(cfg, in_width=in_width, out_width=out_width, coef_frac=coef_frac)
    n = len(x)
    hold = np.zeros(n, bool) if hold is None else hold
    clear = np.zeros(n, bool) if clear is None else clear
    out = np.zeros(n, np.int64)
    sat_ = np.zeros(n, np.int64)
    for k in range(n):
        out[k], sat_[k] = mdl.step(int(x[k]), bool(hold[k]), bool(clear[k]))
    return out, sat_


class LoopFilter(wiring.Component):
    """PID / biquad IIR loop filter (see the module docstring).

    Parameters
    ----------
    in_width : int
        Input/error width, 2..18 bits.
    out_width : int
        Output width, 2..32 bits.
    coef_frac : int
        Fractional bits ``F`` of ``b0..b2``, 0..24.
    dsp_primitive : bool
        Instantiate ``MULT18X18D`` (synthesis) instead of behavioural products (simulation);
        the timing is the same.

    Members
    -------
    i : In(stream.Signature(signed(in_width)))
        Input samples ``x``.
    o : Out(stream.Signature(OutSample))
        ``{y: signed(out_width), saturated: 1}``, one per input, :data:`LATENCY` cycles later.
    <register members>
        One per entry of :meth:`registers`.
    """

    def __init__(self, *, in_width=18, out_width=18, coef_frac=16, dsp_primitive=False):
        _check_widths(in_width, out_width, coef_frac)
        self.in_width, self.out_width, self.frac = in_width, out_width, coef_frac
        self.dsp_primitive = dsp_primitive
        self.latency = LATENCY
        self.out_layout = data.StructLayout({"y": signed(out_width), "saturated": 1})
        members = {
            "i": In(stream.Signature(signed(in_width))),
            "o": Out(stream.Signature(self.out_layout)),
        }
        members.update(reg_members(self.registers()))
        super().__init__(members)

    def registers(self):
        iw, ow = self.in_width, self.out_width
        half = (1 << (ow - 1))
        return [
            Reg("setpoint", iw, signed=True, doc="Setpoint in input LSB."),
            Reg("b0", COEF_WIDTH, signed=True, doc=f"Numerator b0, Q.{self.frac}."),
            Reg("b1", COEF_WIDTH, signed=True, doc=f"Numerator b1, Q.{self.frac}."),
            Reg("b2", COEF_WIDTH, signed=True, doc=f"Numerator b2, Q.{self.frac}."),
            Reg("a1", 3, signed=True, reset=-1, doc="Denominator a1, integer -4..3."),
            Reg("a2", 3, signed=True, doc="Denominator a2, integer -4..3."),
            Reg("out_min", ow, signed=True, reset=-half, doc="Lower output limit, output LSB."),
            Reg("out_max", ow, signed=True, reset=half - 1,
                doc="Upper output limit, output LSB."),
            Reg("sign", 1, doc="1: error = setpoint - x (inverting loop)."),
            Reg("wrap", 1, doc="1: the state wraps (phase actuator) instead of clamping."),
            Reg("hold", 1, doc="1: hold the output, freeze the state."),
            Reg("clear", 1, Access.W1P, doc="Write 1: zero the state before the next sample."),
            Reg("sat_count", 32, Access.R, doc="Samples clamped at out_min/out_max (wraps)."),
        ]

    def elaborate(self, platform):
        m = Module()
        F, iw, ow = self.frac, self.in_width, self.out_width
        sw = ow + F                      # state width
        busy = Signal(LATENCY)           # one-hot stage valid bits
        m.d.comb += self.i.ready.eq((busy == 0) & ~self.o.valid)

        pending_clear = Signal()
        with m.If(self.clear):
            m.d.sync += pending_clear.eq(1)

        xr = Signal(signed(iw))
        hold_r = Signal()
        clr_r = Signal()
        e1 = Signal(signed(iw))
        e2 = Signal(signed(iw))
        y1 = Signal(signed(sw))
        y2 = Signal(signed(sw))
        me0 = Signal(signed(iw))
        me1 = Signal(signed(iw))
        me2 = Signal(signed(iw))
        mb0 = Signal(signed(COEF_WIDTH))
        mb1 = Signal(signed(COEF_WIDTH))
        mb2 = Signal(signed(COEF_WIDTH))
        pw = 36
        s = Signal(signed(pw + 2))
        fbr = Signal(signed(sw + 5))
        tw = max(pw + 2, sw + 5) + 1
        t = Signal(signed(tw))
        over = Signal()
        under = Signal()
        hi = Signal(signed(sw + 1))
        lo = Signal(signed(sw + 1))

        m.d.sync += busy.eq(busy << 1)
        # Stage 0: accept.
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [xr.eq(self.i.payload), hold_r.eq(self.hold),
                         clr_r.eq(pending_clear | self.clear), pending_clear.eq(0),
                         busy[0].eq(1)]
        # Stage 1: signed difference to the setpoint.
        diff = Signal(signed(iw + 2))
        with m.If(busy[0]):
            m.d.sync += diff.eq(Mux(self.sign, self.setpoint - xr, xr - self.setpoint))
        # Stage 2: saturated error, clear, multiplier operands.
        e = Signal(signed(iw))
        m.d.comb += e.eq(sat(diff, iw))
        with m.If(busy[1]):
            m.d.sync += [me0.eq(e), me1.eq(Mux(clr_r, 0, e1)), me2.eq(Mux(clr_r, 0, e2)),
                         mb0.eq(self.b0), mb1.eq(self.b1), mb2.eq(self.b2)]
            with m.If(clr_r):
                m.d.sync += [e1.eq(0), e2.eq(0), y1.eq(0), y2.eq(0)]
        # Stages 3-4: products in MULT18X18D (operand and product registers) from the stable
        # stage-2 registers; meanwhile -a*y = 4*a[2]*y - (a[0]*y + 2*a[1]*y), in parts.
        prim = self.dsp_primitive
        p0 = mult18(m, me0, mb0, primitive=prim, name="mul0")
        p1 = mult18(m, me1, mb1, primitive=prim, name="mul1")
        p2 = mult18(m, me2, mb2, primitive=prim, name="mul2")
        ga1 = Signal(signed(sw + 2))
        gb1 = Signal(signed(sw + 3))
        ga2 = Signal(signed(sw + 2))
        gb2 = Signal(signed(sw + 3))
        with m.If(busy[2]):
            m.d.sync += [ga1.eq(Mux(self.a1[0], y1, 0) + Mux(self.a1[1], y1 << 1, 0)),
                         gb1.eq(Mux(self.a1[2], y1 << 2, 0)),
                         ga2.eq(Mux(self.a2[0], y2, 0) + Mux(self.a2[1], y2 << 1, 0)),
                         gb2.eq(Mux(self.a2[2], y2 << 2, 0))]
        u1 = Signal(signed(sw + 4))
        u2 = Signal(signed(sw + 4))
        with m.If(busy[3]):
            m.d.sync += [u1.eq(gb1 - ga1), u2.eq(gb2 - ga2),
                         hi.eq((self.out_max << F) + ((1 << F) - 1)),
                         lo.eq(self.out_min << F)]
        # Stage 5: products available; partial sums.
        s01 = Signal(signed(pw + 1))
        p2r = Signal(signed(pw))
        with m.If(busy[4]):
            m.d.sync += [s01.eq(p0 + p1), p2r.eq(p2), fbr.eq(u1 + u2)]
        # Stage 6: numerator sum.
        with m.If(busy[5]):
            m.d.sync += s.eq(s01 + p2r)
        # Stage 7: total.
        with m.If(busy[6]):
            m.d.sync += t.eq(s + fbr)
        # Stage 8: limit compares.
        # t > hi  <=>  t >> F > out_max (hi has all F low bits set), t < lo likewise: compare
        # only the integer part, as the sign of one subtraction each (a bare carry chain),
        # every cycle (t is stable in stage 8).
        th = Signal(signed(tw - F))
        omax = Signal(signed(ow))
        omin = Signal(signed(ow))
        m.d.comb += th.eq(t >> F)
        m.d.sync += [omax.eq(self.out_max), omin.eq(self.out_min),
                     over.eq((omax - th)[-1]), under.eq((th - omin)[-1])]
        # Stage 9: clamp or wrap, state update, output.
        y = Signal(signed(sw))
        m.d.comb += y.eq(Mux(self.wrap, t[:sw].as_signed(),
                             Mux(over, hi, Mux(under, lo, t))))
        clamped = ~self.wrap & (over | under)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(busy[8]):
            m.d.sync += self.o.valid.eq(1)
            with m.If(hold_r):
                m.d.sync += [self.o.payload.y.eq(y1 >> F), self.o.payload.saturated.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.y.eq(y >> F), self.o.payload.saturated.eq(clamped),
                             e1.eq(me0), e2.eq(me1), y1.eq(y), y2.eq(y1),
                             self.sat_count.eq(self.sat_count + clamped)]
        return m
