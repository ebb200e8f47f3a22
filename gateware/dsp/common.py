"""Shared fixed-point helpers for :mod:`combkey.gateware.dsp` and register forwarding.

Hardware helpers return Amaranth values; the ``*_int`` helpers are their Python-integer models
(they must agree bit for bit). Register forwarding lets a loop expose the registers of the blocks
inside it as its own flat members, following ``connect_registers`` in :mod:`..regs`.
"""
import dataclasses

from amaranth.hdl import ClockSignal, Const, Instance, Mux, Signal, signed
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..regs import Access

__all__ = ["rom2x18", "dp16kd_initvals", "ROM_LATENCY", "mult18", "MULT_LATENCY", "sat",
           "sat_int", "wrap_int", "reg_members", "prefixed", "forward_registers", "check_int"]


#: cycles from the operands to the product of :func:`mult18`.
MULT_LATENCY = 2


def mult18(m, a, b, *, primitive, name):
    """Return the signed 18x18 product ``a * b`` of two cycles ago (operand and product
    registers).

    With ``primitive`` the product is an ECP5 ``MULT18X18D`` instance with its input A/B and
    output registers enabled (Lattice FPGA-TN-02205, "ECP5 and ECP5-5G sysDSP Usage Guide"), so
    the multiplier's combinational delay sits between its own registers: yosys does not pack
    fabric registers into the DSP by itself. Without it (simulation) the same two-register
    pipeline is described behaviourally. Operands are sign-extended to 18 bits.
    """
    p = Signal(signed(36), name=f"{name}_p")
    a18 = Signal(signed(18), name=f"{name}_a")
    b18 = Signal(signed(18), name=f"{name}_b")
    m.d.comb += [a18.eq(a), b18.eq(b)]
    if primitive:
        params = dict(
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
            p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
            p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
            p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
            p_CLK0_DIV="ENABLED", p_GSR="DISABLED", p_RESETMODE="SYNC",
            p_MULT_BYPASS="DISABLED", p_SOURCEB_MODE="B_SHIFT",
            i_CLK0=ClockSignal(), i_CE0=1, i_RST0=0,
            i_SIGNEDA=1, i_SIGNEDB=1, i_SOURCEA=0, i_SOURCEB=0)
        for i in range(18):
            params[f"i_A{i}"] = a18[i]
            params[f"i_B{i}"] = b18[i]
            params[f"i_C{i}"] = 0
        for i in range(36):
            params[f"o_P{i}"] = p[i]
        m.submodules[name] = Instance("MULT18X18D", **params)
    else:
        ar = Signal(signed(18), name=f"{name}_ar")
        br = Signal(signed(18), name=f"{name}_br")
        m.d.sync += [ar.eq(a18), br.eq(b18), p.eq(ar * br)]
    return p


#: cycles from the address to the data of :func:`rom2x18`.
ROM_LATENCY = 2


def dp16kd_initvals(table):
    """``{"INITVAL_00": int, ...}`` of a 1024 x 18 DP16KD holding ``table``.

    Each of the 64 parameters is 320 bits: 16 words of 20 bits, the 18-bit two's complement
    value in the low bits of each word (the layout yosys writes for an inferred 1024 x 18 RAM).
    """
    if len(table) != 1024:
        raise ValueError(f"table must have 1024 entries, not {len(table)!r}")
    out = {}
    for k in range(64):
        v = 0
        for i in range(16):
            v |= (int(table[16 * k + i]) & 0x3FFFF) << (20 * i)
        out[f"INITVAL_{k:02X}"] = v
    return out


def rom2x18(m, table, addr_a, addr_b, *, primitive, name):
    """Two read ports of a 1024 x 18 ROM, data two cycles after the address (free running).

    With ``primitive`` the ROM is one ``DP16KD`` block RAM with its output registers enabled
    (``REGMODE = OUTREG``; Lattice FPGA-TN-02204, "ECP5 and ECP5-5G Memory Usage Guide"): the
    block RAM's clock-to-output without them (about 5.6 ns) alone would exceed a 150 MHz cycle,
    and yosys does not infer them. Without it (simulation) an Amaranth ``Memory`` read port and a
    fabric register give the same timing. ``table`` holds 1024 signed 18-bit values.
    """
    if len(table) != 1024:
        raise ValueError(f"table must have 1024 entries, not {len(table)!r}")
    da = Signal(signed(18), name=f"{name}_da")
    db = Signal(signed(18), name=f"{name}_db")
    if primitive:
        params = dict(p_DATA_WIDTH_A=18, p_DATA_WIDTH_B=18, p_REGMODE_A="OUTREG",
                      p_REGMODE_B="OUTREG", p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                      p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="DISABLED",
                      p_RESETMODE="SYNC",
                      i_CLKA=ClockSignal(), i_CLKB=ClockSignal(), i_CEA=1, i_CEB=1,
                      i_OCEA=1, i_OCEB=1, i_RSTA=0, i_RSTB=0, i_WEA=0, i_WEB=0)
        for key, v in dp16kd_initvals(table).items():
            params[f"p_{key}"] = Const(v, 320)
        for port, addr, data in (("A", addr_a, da), ("B", addr_b, db)):
            for i in range(3):
                params[f"i_CS{port}{i}"] = 0
            for i in range(4):
                params[f"i_AD{port}{i}"] = 0
            for i in range(10):
                params[f"i_AD{port}{i + 4}"] = addr[i]
            for i in range(18):
                params[f"i_DI{port}{i}"] = 0
                params[f"o_DO{port}{i}"] = data[i]
        m.submodules[name] = Instance("DP16KD", **params)
    else:
        m.submodules[name] = mem = Memory(shape=signed(18), depth=1024,
                                          init=[int(v) for v in table])
        for addr, data in ((addr_a, da), (addr_b, db)):
            rp = mem.read_port()
            m.d.comb += rp.addr.eq(addr)
            m.d.sync += data.eq(rp.data)
    return da, db


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
