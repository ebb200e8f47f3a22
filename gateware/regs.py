"""Declarative register descriptions, the register bank, and its exported map.

A node's registers are declared once, here in gateware, as :class:`Reg` objects grouped by the
block that owns them. :class:`RegisterMap` assigns addresses, exports JSON and Markdown, and
hashes the JSON into a 32-bit ``map_hash`` that the host checks before it talks to a node.
:class:`RegisterBank` is the hardware; :class:`BankModel` is its Python model.

Bus
---
The bank is a slave on :data:`RegBus` (driven by the register bridge):

* ``addr``: word address (16 bits). One address is one 32-bit word.
* ``w_en`` / ``w_data``: write the word at ``addr`` this cycle.
* ``r_en``: read the word at ``addr``; ``r_data`` is valid on the **next** cycle
  (read latency 1, throughput one access per cycle).

Reads of unmapped addresses return ``0`` and writes to them are ignored; the bridge checks the
address against the map itself and answers with a status code, so the bank never has to.

Access kinds
------------
===========  ==================================================  ============================
access       host sees                                           block port (bank.reg(name))
===========  ==================================================  ============================
``RW``       read-write value, reset to ``reset``                ``data: Out(w)``, ``w_stb: Out(1)``
``R``        read-only value driven by the block                 ``data: In(w)``, ``r_stb: Out(1)``
``RW1C``     sticky bits set by the block, cleared by writing 1  ``set: In(w)``, ``data: Out(w)``
``W1P``      write-only pulse: ``data`` valid while ``w_stb``    ``data: Out(w)``, ``w_stb: Out(1)``
===========  ==================================================  ============================

``w_stb`` pulses for one cycle after the value changes (RW) or with the written value (W1P);
``r_stb`` pulses in the cycle a read of the register's *first* word is accepted (use it to pop a
FIFO on read). Reading ``W1P`` returns 0.

Wide registers (atomicity)
--------------------------
A register of width ``w > 32`` takes ``ceil(w / 32)`` consecutive addresses, least significant
word first. Reading the first word captures the whole value into a shadow and returns its low
word; reading the other words returns the shadow, so a 64-bit counter is read coherently.
Writing stores words into a shadow and commits the whole register on the write of the **last**
word. (This is amaranth-soc's rule: capture on the first chunk read, commit on the last write.)

Naming
------
Register names are ``block.name`` (``pattern0.p_z``) or bare (``scratch``) for the core
registers. Port attributes replace ``.`` by ``__``; use :meth:`RegisterBank.reg` to look them
up by the register's own name.
"""
import dataclasses
import enum
import hashlib
import json
import re

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Access", "Field", "Reg", "RegisterMap", "RegBus", "RegisterBank", "BankModel",
           "WORD_BITS"]

WORD_BITS = 32
ADDR_BITS = 16

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


class Access(enum.Enum):
    """What the host may do with a register (see the module docstring)."""

    RW = "rw"
    R = "r"
    RW1C = "rw1c"
    W1P = "w1p"


@dataclasses.dataclass(frozen=True)
class Field:
    """A named bit field inside a register: ``offset`` and ``width`` in bits."""

    name: str
    offset: int
    width: int = 1
    doc: str = ""

    def __post_init__(self):
        if not re.match(r"^[a-z][a-z0-9_]*$", self.name):
            raise ValueError(f"field name must be lower_snake_case, not {self.name!r}")
        if self.offset < 0 or self.width < 1:
            raise ValueError(f"field {self.name!r} offset must be >= 0 and width >= 1, not "
                             f"{self.offset!r}/{self.width!r}")


@dataclasses.dataclass(frozen=True)
class Reg:
    """A register description.

    Parameters
    ----------
    name : str
        ``lower_snake`` words, optionally dotted (``block.reg``).
    width : int
        Bits, 1 to 64.
    access : Access
    reset : int
        Value after reset (RW) or documented idle value (R).
    doc : str
        One sentence with units; exported to the map.
    fields : tuple of Field
        Optional named bit fields; they must fit in ``width`` and not overlap.
    signed : bool
        The value is two's complement (the host shows and accepts negative numbers).
    """

    name: str
    width: int = 32
    access: Access = Access.RW
    reset: int = 0
    doc: str = ""
    fields: tuple = ()
    signed: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f"register name must be dotted lower_snake_case, not {self.name!r}")
        if not isinstance(self.width, int) or not 1 <= self.width <= 64:
            raise ValueError(f"register {self.name!r} width must be 1..64, not {self.width!r}")
        if not isinstance(self.access, Access):
            raise TypeError(f"register {self.name!r} access must be an Access, "
                            f"not {self.access!r}")
        lo, hi = (-(1 << (self.width - 1)), (1 << (self.width - 1)) - 1) if self.signed \
            else (0, (1 << self.width) - 1)
        if not lo <= self.reset <= hi:
            raise ValueError(f"register {self.name!r} reset must fit in {self.width} bits, "
                             f"not {self.reset!r}")
        used = 0
        for f in self.fields:
            mask = ((1 << f.width) - 1) << f.offset
            if f.offset + f.width > self.width:
                raise ValueError(f"register {self.name!r} field {f.name!r} exceeds the width")
            if used & mask:
                raise ValueError(f"register {self.name!r} field {f.name!r} overlaps another")
            used |= mask

    @property
    def reset_raw(self):
        """Reset value as the unsigned bus encoding."""
        return self.reset & ((1 << self.width) - 1)

    @property
    def words(self):
        """Number of 32-bit bus words the register occupies."""
        return (self.width + WORD_BITS - 1) // WORD_BITS

    def attr(self):
        """Python attribute name of this register's port on the bank."""
        return self.name.replace(".", "__")

    def check_value(self, value):
        """Return ``value`` as the unsigned bus encoding; raise ``ValueError`` naming the register
        when it does not fit."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"register {self.name!r} value must be an int, not {value!r}")
        if self.signed:
            lo, hi = -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        else:
            lo, hi = 0, (1 << self.width) - 1
        if not lo <= value <= hi:
            raise ValueError(f"register {self.name!r} value must be in [{lo}, {hi}] "
                             f"({self.width} bits{', signed' if self.signed else ''}), "
                             f"not {value!r}")
        return value & ((1 << self.width) - 1)

    def decode(self, raw):
        """Interpret the unsigned bus value ``raw`` (signed registers become negative)."""
        raw &= (1 << self.width) - 1
        if self.signed and raw >> (self.width - 1):
            raw -= 1 << self.width
        return raw


class RegisterMap:
    """Registers with assigned word addresses.

    Parameters
    ----------
    groups : iterable of (str, iterable of Reg)
        ``(prefix, regs)``; a non-empty prefix is prepended as ``prefix.``. Addresses are
        assigned in order, starting at 0, each register aligned to its word count.

    Raises
    ------
    ValueError
        On a duplicate name or a map larger than the 16-bit address space.
    """

    def __init__(self, groups):
        self._regs = []
        self._addr = {}
        self._by_name = {}
        addr = 0
        for prefix, regs in groups:
            for reg in regs:
                if prefix:
                    reg = dataclasses.replace(reg, name=f"{prefix}.{reg.name}")
                if reg.name in self._by_name:
                    raise ValueError(f"register name {reg.name!r} is declared twice")
                if reg.words > 1 and addr % reg.words:
                    addr += reg.words - addr % reg.words
                self._regs.append(reg)
                self._by_name[reg.name] = reg
                self._addr[reg.name] = addr
                addr += reg.words
        if addr > 1 << ADDR_BITS:
            raise ValueError(f"register map needs {addr} words, more than 2**{ADDR_BITS}")
        self.size = addr

    def __iter__(self):
        return iter(self._regs)

    def __len__(self):
        return len(self._regs)

    def __contains__(self, name):
        return name in self._by_name

    def __getitem__(self, name):
        return self._by_name[name]

    def address(self, name):
        """Word address of register ``name``."""
        return self._addr[name]

    def all_resources(self):
        """Yield ``(address, Reg)`` in address order."""
        for reg in self._regs:
            yield self._addr[reg.name], reg

    def word_owner(self):
        """Return ``{address: (Reg, word_index)}`` for every mapped word."""
        owner = {}
        for addr, reg in self.all_resources():
            for i in range(reg.words):
                owner[addr + i] = (reg, i)
        return owner

    def as_dict(self, with_hash=True):
        """The map as plain data (the JSON export)."""
        regs = []
        for addr, reg in self.all_resources():
            regs.append({
                "name": reg.name, "address": addr, "words": reg.words, "width": reg.width,
                "access": reg.access.value, "reset": reg.reset, "signed": reg.signed,
                "doc": reg.doc,
                "fields": [{"name": f.name, "offset": f.offset, "width": f.width, "doc": f.doc}
                           for f in reg.fields],
            })
        data = {"word_bits": WORD_BITS, "registers": regs}
        if with_hash:
            data["map_hash"] = self.map_hash()
        return data

    def map_hash(self):
        """32-bit hash of the map (SHA-256 of its canonical JSON, first 4 bytes, big endian).

        The ``map_hash`` identity register holds it, so a host with a different map refuses the
        node. Registers named ``map_hash`` are excluded from their own hash by construction (the
        hash covers names, addresses and shapes, not values).
        """
        text = json.dumps(self.as_dict(with_hash=False), sort_keys=True, separators=(",", ":"))
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")

    def to_json(self):
        return json.dumps(self.as_dict(), indent=2)

    def to_markdown(self, title="Register map"):
        lines = [f"# {title}", "",
                 f"Word size {WORD_BITS} bits; map hash `0x{self.map_hash():08x}`.", "",
                 "| address | name | width | access | reset | description |",
                 "|---|---|---|---|---|---|"]
        for addr, reg in self.all_resources():
            span = f"0x{addr:04x}" if reg.words == 1 else \
                f"0x{addr:04x}-0x{addr + reg.words - 1:04x}"
            doc = reg.doc.replace("|", "\\|")
            if reg.fields:
                doc += " Fields: " + ", ".join(
                    f"`{f.name}`[{f.offset + f.width - 1}:{f.offset}]"
                    + (f" {f.doc}" if f.doc else "") for f in reg.fields)
            lines.append(f"| {span} | `{reg.name}` | {reg.width}{' s' if reg.signed else ''} "
                         f"| {reg.access.value} | {reg.reset:#x} | {doc} |")
        return "\n".join(lines) + "\n"


#: Bus between the register bridge (initiator) and the bank (target).
RegBus = wiring.Signature({
    "addr": Out(ADDR_BITS),
    "w_en": Out(1),
    "w_data": Out(WORD_BITS),
    "r_en": Out(1),
    "r_data": In(WORD_BITS),
})


def _port_signature(reg):
    w = reg.width
    if reg.access is Access.RW:
        return wiring.Signature({"data": Out(w, init=reg.reset_raw), "w_stb": Out(1)})
    if reg.access is Access.R:
        return wiring.Signature({"data": In(w), "r_stb": Out(1)})
    if reg.access is Access.RW1C:
        return wiring.Signature({"set": In(w), "data": Out(w, init=reg.reset_raw)})
    return wiring.Signature({"data": Out(w), "w_stb": Out(1)})


class RegisterBank(wiring.Component):
    """Register bank generated from a :class:`RegisterMap`.

    Parameters
    ----------
    regmap : RegisterMap

    Members
    -------
    bus : In(RegBus)
        Word access from the bridge; read latency 1 cycle, one access per cycle.
    regs : Out(...)
        One port per register, attribute ``reg.attr()``; see the access table in the module
        docstring. Look ports up with :meth:`reg`.
    """

    def __init__(self, regmap):
        self.regmap = regmap
        members = {reg.attr(): Out(_port_signature(reg)) for reg in regmap}
        super().__init__({"bus": In(RegBus), "regs": Out(wiring.Signature(members))})

    def reg(self, name):
        """Return the port of register ``name`` (dotted name)."""
        if name not in self.regmap:
            raise KeyError(f"no register named {name!r}")
        return getattr(self.regs, self.regmap[name].attr())

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        r_data = Signal(WORD_BITS)
        m.d.comb += bus.r_data.eq(r_data)
        m.d.sync += r_data.eq(0)

        read_cases = []
        for addr, reg in self.regmap.all_resources():
            port = self.reg(reg.name)
            w = reg.width
            nw = reg.words
            # Current value as seen by the host (RW, RW1C: stored; R: from the block).
            if reg.access is Access.RW:
                m.d.sync += port.w_stb.eq(0)
                value = port.data
            elif reg.access is Access.RW1C:
                m.d.sync += port.data.eq(port.data | port.set)
                value = port.data
            elif reg.access is Access.R:
                m.d.comb += port.r_stb.eq(bus.r_en & (bus.addr == addr))
                value = port.data
            else:
                m.d.sync += port.w_stb.eq(0)
                value = Const(0, w)

            # Read path (shadow capture for wide registers): one parallel case per word.
            if nw == 1:
                read_cases.append((addr, [r_data.eq(value)]))
            else:
                shadow = Signal(nw * WORD_BITS, name=f"{reg.attr()}_rshadow")
                read_cases.append((addr, [shadow.eq(value), r_data.eq(value[:WORD_BITS])]))
                for i in range(1, nw):
                    read_cases.append((addr + i, [r_data.eq(shadow.word_select(i, WORD_BITS))]))

            # Write path.
            if reg.access is Access.R:
                continue
            if nw == 1:
                new = bus.w_data[:w]
                hit_last = bus.w_en & (bus.addr == addr)
            else:
                wshadow = Signal((nw - 1) * WORD_BITS, name=f"{reg.attr()}_wshadow")
                for i in range(nw - 1):
                    with m.If(bus.w_en & (bus.addr == addr + i)):
                        m.d.sync += wshadow.word_select(i, WORD_BITS).eq(bus.w_data)
                new = Cat(wshadow, bus.w_data)[:w]
                hit_last = bus.w_en & (bus.addr == addr + nw - 1)
            with m.If(hit_last):
                if reg.access is Access.RW:
                    m.d.sync += [port.data.eq(new), port.w_stb.eq(1)]
                elif reg.access is Access.RW1C:
                    m.d.sync += port.data.eq((port.data & ~new) | port.set)
                else:
                    m.d.sync += [port.data.eq(new), port.w_stb.eq(1)]

        # A parallel multiplexer (not a priority chain): depth grows with log2 of the map size.
        with m.If(bus.r_en):
            with m.Switch(bus.addr):
                for addr, stmts in read_cases:
                    with m.Case(addr):
                        m.d.sync += stmts
        return m


class BankModel:
    """Python model of :class:`RegisterBank` at the bus level.

    ``read(addr)`` and ``write(addr, data)`` behave as one bus access each; ``values`` holds the
    stored value of RW / RW1C / W1P registers and ``inputs`` the value each R register's block
    drives (set it before reading). ``strobes`` records ``(name, value)`` of every W1P / RW
    write, in order.
    """

    def __init__(self, regmap):
        self.regmap = regmap
        self.owner = regmap.word_owner()
        self.values = {r.name: r.reset_raw for r in regmap if r.access is not Access.R}
        for r in regmap:
            if r.access is Access.W1P:
                self.values[r.name] = 0
        self.inputs = {r.name: 0 for r in regmap if r.access is Access.R}
        self._rshadow = {}
        self._wshadow = {}
        self.strobes = []

    def current(self, reg):
        if reg.access is Access.R:
            return self.inputs[reg.name] & ((1 << reg.width) - 1)
        if reg.access is Access.W1P:
            return 0
        return self.values[reg.name]

    def read(self, addr):
        if addr not in self.owner:
            return 0
        reg, i = self.owner[addr]
        if reg.words == 1:
            return self.current(reg)
        if i == 0:
            self._rshadow[reg.name] = self.current(reg)
        return (self._rshadow.get(reg.name, 0) >> (WORD_BITS * i)) & 0xFFFF_FFFF

    def write(self, addr, data):
        if addr not in self.owner:
            return
        reg, i = self.owner[addr]
        if reg.access is Access.R:
            return
        if i < reg.words - 1:
            sh = self._wshadow.get(reg.name, 0)
            sh &= ~(0xFFFF_FFFF << (WORD_BITS * i))
            self._wshadow[reg.name] = sh | (data << (WORD_BITS * i))
            return
        full = self._wshadow.get(reg.name, 0) & ((1 << (WORD_BITS * i)) - 1)
        new = (full | (data << (WORD_BITS * i))) & ((1 << reg.width) - 1)
        if reg.access is Access.RW1C:
            self.values[reg.name] &= ~new
        else:
            self.values[reg.name] = new
            self.strobes.append((reg.name, new))


def connect_registers(m, bank, prefix, block):
    """Wire the registers a block declares to the bank's ports.

    ``block.registers()`` returns the block's :class:`Reg` list (names without ``prefix``); the
    block has one signature member per register, named ``reg.attr()``:

    * ``RW``: block member ``In(width)`` receives the stored value; an optional member
      ``<attr>_stb: In(1)`` receives the write strobe.
    * ``R``: block member ``Out(width)`` drives the value; an optional ``<attr>_rd: In(1)``
      receives the read strobe (pop a FIFO on read).
    * ``RW1C``: block member ``Out(width)`` drives the bits to set (sticky until cleared).
    * ``W1P``: block member ``In(width)`` receives the written value (held after the write);
      ``<attr>_stb: In(1)`` receives the one-cycle pulse. For 1-bit W1P registers the block
      member itself receives the pulse and no ``_stb`` member is needed.
    """
    members = block.signature.members
    for reg in block.registers():
        full = f"{prefix}.{reg.name}" if prefix else reg.name
        port = bank.reg(full)
        attr = reg.attr()
        sig = getattr(block, attr)
        if reg.access is Access.RW:
            m.d.comb += sig.eq(port.data)
            if attr + "_stb" in members:
                m.d.comb += getattr(block, attr + "_stb").eq(port.w_stb)
        elif reg.access is Access.R:
            m.d.comb += port.data.eq(sig)
            if attr + "_rd" in members:
                m.d.comb += getattr(block, attr + "_rd").eq(port.r_stb)
        elif reg.access is Access.RW1C:
            m.d.comb += port.set.eq(sig)
        elif reg.width == 1 and attr + "_stb" not in members:
            m.d.comb += sig.eq(port.w_stb)
        else:
            m.d.comb += sig.eq(port.data)
            m.d.comb += getattr(block, attr + "_stb").eq(port.w_stb)
