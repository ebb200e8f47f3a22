# amaranth: UnusedElaboratable=no
"""EthernetCore register wiring and the CounterRecordSource test pattern against its model."""
import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import ClockDomain, Module
from amaranth.lib import wiring

from combkey.gateware.net.core import CounterRecordSource, EthernetCore, counter_source_model
from combkey.gateware.net.stack import COUNTERS
from combkey.gateware.regs import Access, RegisterBank, RegisterMap, connect_registers
from combkey.gateware.stream import make_simulator


def rtl_counter_source(enable, ready, period):
    dut = CounterRecordSource()
    sim = make_simulator(dut)
    n = len(enable)
    valid = np.zeros(n, np.uint8)
    payload = np.zeros(n, np.uint64)
    dropped = np.zeros(n, np.uint64)

    async def bench(ctx):
        ctx.set(dut.period, period)
        for t in range(n):
            ctx.set(dut.enable, int(enable[t]))
            ctx.set(dut.o.ready, int(ready[t]))
            _, _, v, p, d = await ctx.tick().sample(dut.o.valid, dut.o.payload, dut.dropped)
            valid[t], payload[t], dropped[t] = v, p, d

    sim.add_testbench(bench)
    sim.run()
    return valid, payload, dropped


def test_counter_source_matches_model():
    rng = np.random.default_rng(4)
    for period, p_ready in ((1, 0.7), (3, 0.3), (5, 1.0)):
        n = 400
        enable = (rng.random(n) < 0.9).astype(np.uint8)
        enable[:5] = 0
        ready = (rng.random(n) < p_ready).astype(np.uint8)
        got = rtl_counter_source(enable, ready, period)
        want = counter_source_model(enable, ready, period)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
    assert want[2][-1] >= 0


def test_counter_source_loses_only_what_it_counts():
    n = 300
    enable = np.ones(n, np.uint8)
    ready = (np.arange(n) % 3 == 0).astype(np.uint8)
    valid, payload, dropped = counter_source_model(enable, ready, 1)
    accepted = payload[(valid == 1) & (ready == 1)]
    assert np.all(np.diff(accepted.astype(np.int64)) > 0)
    missing = int(accepted[-1] - accepted[0] + 1 - len(accepted))
    assert missing <= int(dropped[-1]) and dropped[-1] > 0
    np.testing.assert_array_equal(rtl_counter_source(enable, ready, 1)[2], dropped)


class _RegTop(wiring.Component):
    def __init__(self):
        self.core = EthernetCore(tx_clk_mode="delay")
        self.regmap = RegisterMap([("net", self.core.registers())])
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()
        m.submodules.core = self.core
        m.submodules.bank = bank = RegisterBank(self.regmap)
        connect_registers(m, bank, "net", self.core)
        return m


def test_core_registers_connect_to_a_bank():
    top = _RegTop()
    names = {r.name for r in top.regmap}
    assert {f"net.{c}" for c in COUNTERS} | {"net.mac", "net.ip", "net.tx_underruns"} <= names
    assert top.regmap["net.mac"].access is Access.RW and top.regmap["net.mac"].width == 48
    text = rtlil.convert(top)
    assert "IDDRX1F" not in text          # no platform: the behavioural DDR model is used


def test_rgmii_pins_on_the_ecpix5_platform():
    from amaranth.hdl import Elaboratable
    from amaranth_boards.ecpix5 import ECPIX585Platform

    from combkey.gateware.net.core import RGMIIPins

    class Top(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.submodules.core = core = EthernetCore(tx_clk_mode="delay")
            m.submodules.pins = RGMIIPins(platform.request("eth_rgmii", 0, dir="-"), core)
            return m

    plan = ECPIX585Platform().build(Top(), do_build=False)
    text = plan.files["top.il"]
    assert text.count("cell \\IDDRX1F") == 5 and text.count("cell \\ODDRX1F") == 6
    assert text.count("cell \\DELAYG") == 1            # TXC delayed; the PHY delays RXC


def test_core_domain_parameters_checked():
    with pytest.raises(ValueError, match=r"domain must be a clock domain name other than "
                                         r"'eth_rx', not 'eth_rx'"):
        EthernetCore(domain="eth_rx")
    with pytest.raises(ValueError, match=r"cdc_depth must be a power of 2 >= 4, not 6"):
        EthernetCore(domain="eth", cdc_depth=6)


class _TwoClockTop(wiring.Component):
    def __init__(self):
        self.core = EthernetCore(domain="eth", tx_clk_mode="delay")
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()
        m.domains.eth = ClockDomain()
        m.submodules.core = self.core
        return m


def test_core_config_crosses_into_the_eth_domain():
    """With domain="eth", the stack sees the reset configuration from the start, then every
    value written on the sync side as one coherent snapshot (never a mix of two writes), and
    the sync-side status reads the stack's."""
    from amaranth.sim import Simulator

    top = _TwoClockTop()
    core, stack = top.core, top.core.stack
    sim = Simulator(top)
    sim.add_clock(20e-9, domain="sync")
    sim.add_clock(8e-9, phase=5e-9, domain="eth")
    writes = [(0x02_00_00_00_00_10 + k, 0x0A_00_00_10 + k, 7100 + k) for k in range(12)]
    seen = []

    async def writer(ctx):
        for mac, ip, port in writes:
            ctx.set(core.mac, mac)
            ctx.set(core.ip, ip)
            ctx.set(core.reg_port, port)
            await ctx.tick().repeat(7)            # faster than the handshake: some are skipped
        await ctx.tick().repeat(40)

    async def monitor(ctx):
        for _ in range(300):
            _, _, mac, ip, port = await ctx.tick("eth").sample(stack.mac, stack.ip,
                                                              stack.reg_port)
            seen.append((mac, ip, port))

    sim.add_testbench(writer)
    sim.add_testbench(monitor)
    sim.run()
    initial = (core.stack.params["mac"], core.stack.params["ip"], core.stack.params["reg_port"])
    assert seen[0] == initial
    distinct = [v for v in dict.fromkeys(seen) if v != initial]
    assert all(v in writes for v in distinct)                     # coherent snapshots only
    assert [writes.index(v) for v in distinct] == sorted(writes.index(v) for v in distinct)
    assert seen[-1] == writes[-1] and len(distinct) >= 4
