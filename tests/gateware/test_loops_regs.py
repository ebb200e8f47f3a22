"""Each loop's registers() wire to a RegisterBank with connect_registers, and a bus write
reaches the loop."""
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from combkey.gateware.loops.opll import OPLL
from combkey.gateware.loops.phase_compensator import PhaseCompensator
from combkey.gateware.loops.reprate import RepRateLock
from combkey.gateware.regs import RegBus, RegisterBank, RegisterMap, connect_registers
from combkey.gateware.stream import make_simulator


class Top(wiring.Component):
    bus: In(RegBus)

    def __init__(self, loop, prefix):
        self.loop, self.prefix = loop, prefix
        self.regmap = RegisterMap([(prefix, loop.registers())])
        self.bank = RegisterBank(self.regmap)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.bank = self.bank
        m.submodules.loop = self.loop
        wiring.connect(m, wiring.flipped(self.bus), self.bank.bus)
        connect_registers(m, self.bank, self.prefix, self.loop)
        return m


@pytest.mark.parametrize("factory,prefix,reg,value", [
    (RepRateLock, "rep", "target", 10000),
    (OPLL, "opll", "pd.ftw", 1 << 29),
    (PhaseCompensator, "tf", "filter.b0", -1234),
])
def test_bus_write_reaches_the_loop(factory, prefix, reg, value):
    top = Top(factory(), prefix)
    names = [r.name for r in top.regmap]
    assert f"{prefix}.monitor.loss_count" in names and f"{prefix}.filter.b0" in names
    full = f"{prefix}.{reg}"
    addr = top.regmap.address(full)
    raw = top.regmap[full].check_value(value)
    sim = make_simulator(top)
    got = []

    async def tb(ctx):
        ctx.set(top.bus.addr, addr)
        ctx.set(top.bus.w_data, raw)
        ctx.set(top.bus.w_en, 1)
        await ctx.tick()
        ctx.set(top.bus.w_en, 0)
        await ctx.tick()
        got.append(ctx.get(getattr(top.loop, reg.replace(".", "__"))))
        ctx.set(top.bus.r_en, 1)
        ctx.set(top.bus.addr, top.regmap.address(f"{prefix}.monitor.state"))
        await ctx.tick()
        ctx.set(top.bus.r_en, 0)
        got.append(ctx.get(top.bus.r_data))

    sim.add_testbench(tb)
    sim.run()
    assert got == [value, 0]          # value written; monitor starts in ACQUIRE (0)
