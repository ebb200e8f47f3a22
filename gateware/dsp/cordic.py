"""Pipelined CORDIC in vectoring mode: atan2 and magnitude.

For an input vector ``(x, y)`` the block returns ``phase ~= atan2(y, x)`` in turns and
``mag ~= K * hypot(x, y)`` with the CORDIC gain ``K = prod(sqrt(1 + 2**-2i)) ~= 1.6468`` (not
compensated: the loops only need a relative amplitude, and the gain is the same for every
sample). Algorithm: the usual pre-rotation by half a turn for ``x < 0`` (so every angle is
reachable), then ``iterations`` micro-rotations by ``+-atan(2**-i)`` that drive ``y`` to zero
(J. E. Volder, "The CORDIC Trigonometric Computing Technique", IRE Trans. Electron. Comput.,
1959).

Formats
-------
* ``x, y``: ``signed(width)``.
* ``phase``: ``signed(phase_bits)``, turns: value ``/ 2**phase_bits`` in ``[-0.5, 0.5)``.
  For ``(0, 0)`` the phase is meaningless (``mag`` is 0); users check the magnitude or the
  counts that produced the vector.
* ``mag``: ``unsigned(width + 1)``, input LSB times ``K``.

Internally ``x, y`` carry 2 growth bits and :data:`XY_FRAC` = 4 fractional bits (so small
vectors, e.g. a few tens of clicks, keep their angle), the angle :data:`GUARD` = 3 extra bits;
the phase is rounded to ``phase_bits`` at the output, the magnitude truncated to input LSB.

Timing: fully pipelined, one vector per cycle, latency ``iterations + 2`` cycles
(:attr:`Cordic.latency`); the pipeline stalls as a whole while ``o.valid & ~o.ready``.
"""
import functools
import math

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .common import check_int

__all__ = ["Cordic", "cordic_model", "cordic_int", "cordic_angles", "GUARD", "XY_FRAC"]

GUARD = 3
XY_FRAC = 4


@functools.cache
def cordic_angles(iterations, phase_bits):
    """Micro-rotation angles ``atan(2**-i)`` in turns, scaled to ``phase_bits + GUARD`` bits."""
    scale = 1 << (phase_bits + GUARD)
    return tuple(int(round(math.atan(2.0 ** -i) / (2 * math.pi) * scale))
                 for i in range(iterations))


def _check(width, phase_bits, iterations):
    check_int("width", width, 4, 32)
    check_int("phase_bits", phase_bits, 4, 24)
    check_int("iterations", iterations, 1, 30)


def cordic_model(x, y, *, width=18, phase_bits=16, iterations=16):
    """Bit-exact model of :class:`Cordic`; return ``(mag, phase)`` int64 arrays."""
    _check(width, phase_bits, iterations)
    if np.ndim(x) == 1 and len(x) == 1:      # scalar fast path (co-simulation loops)
        m, p = cordic_int(int(x[0]), int(y[0]), phase_bits, iterations)
        return np.array([m], np.int64), np.array([p], np.int64)
    x = np.asarray(x, np.int64) << XY_FRAC
    y = np.asarray(y, np.int64) << XY_FRAC
    zb = phase_bits + GUARD
    neg = x < 0
    x[neg], y[neg] = -x[neg], -y[neg]
    z = np.where(neg, 1 << (zb - 1), 0).astype(np.int64)
    for i, a in enumerate(cordic_angles(iterations, phase_bits)):
        pos = y >= 0
        xs, ys = x >> i, y >> i
        x, y = np.where(pos, x + ys, x - ys), np.where(pos, y - xs, y + xs)
        z = np.where(pos, z + a, z - a)
    zr = (z + (1 << (GUARD - 1))) >> GUARD
    phase = ((zr + (1 << (phase_bits - 1))) & ((1 << phase_bits) - 1)) - (1 << (phase_bits - 1))
    return x >> XY_FRAC, phase


def cordic_int(x, y, phase_bits=16, iterations=16):
    """:func:`cordic_model` for one vector of Python ints: ``(mag, phase)``."""
    x <<= XY_FRAC
    y <<= XY_FRAC
    zb = phase_bits + GUARD
    z = 0
    if x < 0:
        x, y, z = -x, -y, 1 << (zb - 1)
    for i, a in enumerate(cordic_angles(iterations, phase_bits)):
        if y >= 0:
            x, y, z = x + (y >> i), y - (x >> i), z + a
        else:
            x, y, z = x - (y >> i), y + (x >> i), z - a
    zr = (z + (1 << (GUARD - 1))) >> GUARD
    half = 1 << (phase_bits - 1)
    return x >> XY_FRAC, ((zr + half) & ((1 << phase_bits) - 1)) - half


class Cordic(wiring.Component):
    """Pipelined CORDIC atan2 + magnitude (see the module docstring).

    Parameters
    ----------
    width : int
        Input component width (4..32).
    phase_bits : int
        Output phase width (turns), 4..24.
    iterations : int
        Micro-rotations, 1..30 (about one bit of phase per iteration).

    Members
    -------
    i : In(stream.Signature({x: signed(width), y: signed(width)}))
    o : Out(stream.Signature({mag: unsigned(width + 1), phase: signed(phase_bits)}))
    """

    def __init__(self, *, width=18, phase_bits=16, iterations=16):
        _check(width, phase_bits, iterations)
        self.width, self.phase_bits, self.iterations = width, phase_bits, iterations
        self.latency = iterations + 2
        self.in_layout = data.StructLayout({"x": signed(width), "y": signed(width)})
        self.out_layout = data.StructLayout({"mag": width + 1, "phase": signed(phase_bits)})
        super().__init__({"i": In(stream.Signature(self.in_layout)),
                          "o": Out(stream.Signature(self.out_layout))})

    def elaborate(self, platform):
        m = Module()
        w = self.width + 2 + XY_FRAC
        zb = self.phase_bits + GUARD
        n = self.iterations
        adv = Signal()
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready), self.i.ready.eq(adv)]
        xs = [Signal(signed(w), name=f"x{k}") for k in range(n + 1)]
        ys = [Signal(signed(w), name=f"y{k}") for k in range(n + 1)]
        zs = [Signal(zb, name=f"z{k}") for k in range(n + 1)]
        vs = [Signal(name=f"v{k}") for k in range(n + 1)]
        angles = cordic_angles(n, self.phase_bits)
        with m.If(adv):
            x0 = self.i.payload.x << XY_FRAC
            y0 = self.i.payload.y << XY_FRAC
            neg = x0 < 0
            m.d.sync += [xs[0].eq(Mux(neg, -x0, x0)), ys[0].eq(Mux(neg, -y0, y0)),
                         zs[0].eq(Mux(neg, 1 << (zb - 1), 0)), vs[0].eq(self.i.valid)]
            for k in range(n):
                x, y, z = xs[k], ys[k], zs[k]
                pos = y >= 0
                m.d.sync += [
                    xs[k + 1].eq(Mux(pos, x + (y >> k), x - (y >> k))),
                    ys[k + 1].eq(Mux(pos, y - (x >> k), y + (x >> k))),
                    zs[k + 1].eq(Mux(pos, z + angles[k], z - angles[k])),
                    vs[k + 1].eq(vs[k]),
                ]
            zr = (zs[n] + (1 << (GUARD - 1)))[GUARD:zb]
            m.d.sync += [self.o.valid.eq(vs[n]), self.o.payload.mag.eq(xs[n] >> XY_FRAC),
                         self.o.payload.phase.eq(zr.as_signed())]
        return m
