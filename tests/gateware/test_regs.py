"""Register descriptions, map export, and the register bank against its model."""
import json
import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from combkey.gateware.regs import (
    Access,
    BankModel,
    Field,
    Reg,
    RegisterBank,
    RegisterMap,
    connect_registers,
)
from combkey.gateware.stream import make_simulator

REGS = [
    Reg("ctrl", 8, Access.RW, reset=0x5A, doc="control",
        fields=(Field("enable", 0), Field("mode", 1, 3))),
    Reg("status", 12, Access.R, doc="status"),
    Reg("events", 16, Access.RW1C, doc="sticky events"),
    Reg("kick", 4, Access.W1P, doc="pulse"),
    Reg("counter", 64, Access.R, doc="wide counter"),
    Reg("offset", 40, Access.RW, reset=0x12_3456_789A, doc="wide rw"),
    Reg("gain", 16, Access.RW, signed=True, reset=-3, doc="signed"),
]


def make_map():
    return RegisterMap([("", REGS[:2]), ("blk", REGS[2:])])


def test_addresses_alignment_and_export():
    m = make_map()
    assert [(a, r.name) for a, r in m.all_resources()] == [
        (0, "ctrl"), (1, "status"), (2, "blk.events"), (3, "blk.kick"), (4, "blk.counter"),
        (6, "blk.offset"), (8, "blk.gain")]
    assert m.size == 9
    data = json.loads(m.to_json())
    assert data["map_hash"] == m.map_hash()
    assert [r["name"] for r in data["registers"]][-1] == "blk.gain"
    md = m.to_markdown()
    assert "`blk.counter`" in md and "0x0004-0x0005" in md and "`mode`[3:1]" in md
    # The hash covers names and shapes: renaming a register changes it.
    other = RegisterMap([("", REGS[:2]), ("blk2", REGS[2:])])
    assert other.map_hash() != m.map_hash()


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "Bad"}, "register name must be dotted lower_snake_case, not 'Bad'"),
    ({"name": "a", "width": 65}, "register 'a' width must be 1..64, not 65"),
    ({"name": "a", "width": 4, "reset": 16}, "register 'a' reset must fit in 4 bits, not 16"),
    ({"name": "a", "width": 4, "fields": (Field("x", 3, 2),)},
     "register 'a' field 'x' exceeds the width"),
    ({"name": "a", "fields": (Field("x", 0, 2), Field("y", 1))},
     "register 'a' field 'y' overlaps another"),
])
def test_reg_validation_messages(kwargs, message):
    with pytest.raises(ValueError) as exc:
        Reg(**kwargs)
    assert str(exc.value) == message


def test_duplicate_and_value_checks():
    with pytest.raises(ValueError, match="register name 'x' is declared twice"):
        RegisterMap([("", [Reg("x"), Reg("x")])])
    gain = make_map()["blk.gain"]
    assert gain.check_value(-3) == 0xFFFD and gain.decode(0xFFFD) == -3
    with pytest.raises(ValueError, match=r"register 'blk.gain' value must be in \[-32768, "):
        gain.check_value(40000)
    with pytest.raises(TypeError, match="value must be an int"):
        gain.check_value(1.5)


class _Block(wiring.Component):
    """A block with one member per register, for connect_registers."""

    def __init__(self):
        super().__init__({"ctrl": wiring.In(8), "status": wiring.Out(12),
                          "status_rd": wiring.In(1), "kick": wiring.In(4),
                          "kick_stb": wiring.In(1)})

    @staticmethod
    def registers():
        return [REGS[0], REGS[1], REGS[3]]

    def elaborate(self, platform):
        return Module()


def test_connect_registers_elaborates():
    block = _Block()
    regmap = RegisterMap([("b", block.registers())])
    bank = RegisterBank(regmap)
    m = Module()
    m.submodules.bank = bank
    m.submodules.block = block
    connect_registers(m, bank, "b", block)
    from amaranth.back import rtlil
    assert "b__ctrl" in rtlil.convert(m, ports=[])


def run_bank(ops, r_inputs, sets):
    """Drive the bank with bus ops; return r_data after each op and final stored values."""
    regmap = make_map()
    dut = RegisterBank(regmap)
    sim = make_simulator(dut)
    results = []
    strobes = []

    async def tb(ctx):
        for name, value in r_inputs.items():
            ctx.set(dut.reg(name).data, value)
        for i, (kind, addr, data) in enumerate(ops):
            ctx.set(dut.bus.addr, addr)
            ctx.set(dut.bus.w_en, kind == "w")
            ctx.set(dut.bus.r_en, kind == "r")
            ctx.set(dut.bus.w_data, data)
            ctx.set(dut.reg("blk.events").set, sets[i])
            await ctx.tick()
            ctx.set(dut.bus.w_en, 0)
            ctx.set(dut.bus.r_en, 0)
            ctx.set(dut.reg("blk.events").set, 0)
            results.append(ctx.get(dut.bus.r_data) if kind == "r" else None)
            if ctx.get(dut.reg("blk.kick").w_stb):
                strobes.append(("blk.kick", ctx.get(dut.reg("blk.kick").data)))
            if ctx.get(dut.reg("blk.offset").w_stb):
                strobes.append(("blk.offset", ctx.get(dut.reg("blk.offset").data)))
        final = {n: ctx.get(dut.reg(n).data) for n in ("ctrl", "blk.events", "blk.offset",
                                                       "blk.gain")}
        results.append(final)

    sim.add_testbench(tb)
    sim.run()
    return results, strobes


def model_bank(ops, r_inputs, sets):
    model = BankModel(make_map())
    model.inputs.update(r_inputs)
    results = []
    for i, (kind, addr, data) in enumerate(ops):
        if kind == "r":
            results.append(model.read(addr))
        else:
            if kind == "w":
                model.write(addr, data)
            results.append(None)
        # The block's set bits land in the same cycle as a bus access.
        model.values["blk.events"] |= sets[i]
    final = {n: model.values[n] for n in ("ctrl", "blk.events", "blk.offset", "blk.gain")}
    results.append(final)
    strobes = [s for s in model.strobes if s[0] in ("blk.kick", "blk.offset")]
    return results, strobes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bank_matches_model_random(seed):
    rng = random.Random(seed)
    ops = []
    for _ in range(400):
        kind = rng.choice("rrwn")
        addr = rng.choice(list(range(11)) + [0xFFFF])
        data = rng.choice([0, 0xFFFF_FFFF, rng.getrandbits(32)])
        ops.append((kind, addr, data))
    # Corner cases: wide read then the upper word after the value changed; partial wide write.
    ops += [("r", 4, 0), ("r", 5, 0), ("w", 6, 0xDEADBEEF), ("r", 6, 0), ("w", 7, 0xAB),
            ("r", 6, 0), ("r", 7, 0), ("w", 2, 0xFFFF), ("r", 2, 0)]
    sets = [rng.choice([0, 0, 1 << rng.randrange(16)]) for _ in ops]
    # RW1C: a write-1-to-clear racing with a set keeps the set bit in both.
    r_inputs = {"status": 0xABC, "blk.counter": 0x0123_4567_89AB_CDEF}
    hw, hw_strobes = run_bank(ops, r_inputs, sets)
    sw, sw_strobes = model_bank(ops, r_inputs, sets)
    assert hw == sw
    assert hw_strobes == sw_strobes
