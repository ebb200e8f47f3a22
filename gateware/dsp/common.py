"""Shared fixed-point helpers for :mod:`combkey.gateware.dsp` and register forwarding.

Hardware helpers return Amaranth values; the ``*_int`` helpers are their Python-integer models
(they must agree bit for bit). Register forwarding lets a loop expose the registers of the blocks
inside it as its own flat members, following ``connect_registers`` in :mod:`..regs`.
"""
import dataclasses

from amaranth.hdl import Mux, signed
from amaranth.lib.wiring import In, Out

from ..regs import Access

__all__ = ["sat", "sat_int", "wrap_int", "reg_members", "prefixed", "forward_registers",
           "check_int"]


def sat(value, width):
    """Saturate signed ``value`` to ``signed(width)`` (an Amaranth expression)."""
    hi = (1 << (width - 1)) - 1
    lo = -(1 << (width - 1))
    return Mux(value > hi, hi, Mux(value < lo, lo, value))[:width].as_signed()


def sat_int(value, width):
    """Python model of :func:`sat`: clamp ``value`` to the signed ``width``-bit range."""
    hi = (1 << (width - 1)) - 1
    lo = -(1 << (width - 1))
    return hi if value > hi else lo if value < lo else int(value)


def wrap_int(value, width):
    """Reduce ``value`` modulo ``2**width`` into the signed range (two's complement wrap)."""
    value = int(value) & ((1 << width) - 1)
    return value - (1 << width) if value >> (width - 1) else value


def check_int(name, value, lo, hi):
    """Return ``value`` if it is an int in ``[lo, hi]``; else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], not {value!r}")
    return value


def reg_members(regs):
    """Signature members (``connect_registers`` convention) for a list of :class:`Reg`."""
    members = {}
    for reg in regs:
        shape = signed(reg.width) if reg.signed else reg.width
        if reg.access in (Access.RW, Access.W1P):
            members[reg.attr()] = In(shape)
        else:
            members[reg.attr()] = Out(shape)
    return members


def prefixed(prefix, regs):
    """Return ``regs`` renamed ``prefix.name``."""
    return [dataclasses.replace(r, name=f"{prefix}.{r.name}") for r in regs]


def forward_registers(m, outer, prefix, inner, skip=()):
    """Wire ``inner``'s register members to ``outer``'s members named ``prefix.<reg>``.

    Registers named in ``skip`` are left for the caller to wire (e.g. to OR in its own
    hold request)."""
    for reg in inner.registers():
        if reg.name in skip:
            continue
        full = f"{prefix}.{reg.name}" if prefix else reg.name
        o = getattr(outer, full.replace(".", "__"))
        i = getattr(inner, reg.attr())
        if reg.access in (Access.RW, Access.W1P):
            m.d.comb += i.eq(o)
        else:
            m.d.comb += o.eq(i)
