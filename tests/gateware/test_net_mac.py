"""MAC transmit/receive against their models (preamble, padding, FCS, runts, errors)."""
import gc
import random

import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module
from amaranth.sim import Simulator

from combkey.gateware.net.ddr import Delay, delay_taps
from combkey.gateware.net.mac import (
    IFG,
    PREAMBLE,
    RGMII,
    MacRx,
    MacTx,
    RxError,
    fcs,
    mac_rx_model,
    mac_tx_model,
    wire_time,
)
from combkey.gateware.stream import make_simulator


def rtl_mac_tx(frames, stall_first=0):
    """Send ``frames`` through MacTx; return the list of tx_en bursts and their gaps."""
    dut = MacTx()
    sim = make_simulator(dut)
    bursts, gaps = [], []

    async def producer(ctx):
        await ctx.tick().repeat(stall_first)
        for f in frames:
            for i, b in enumerate(f):
                ctx.set(dut.i.payload, {"data": b, "first": i == 0, "last": i == len(f) - 1,
                                        "err": 0})
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def monitor(ctx):
        cur, gap = None, 0
        total = sum(wire_time(len(f)) for f in frames) + stall_first + 40
        for _ in range(total):
            en, d, er = ctx.get(dut.tx_en), ctx.get(dut.txd), ctx.get(dut.tx_er)
            assert not er
            if en:
                if cur is None:
                    cur = bytearray()
                    gaps.append(gap)
                cur.append(d)
            elif cur is not None:
                bursts.append(bytes(cur))
                cur, gap = None, 1
            else:
                gap += 1
            await ctx.tick()

    sim.add_testbench(producer, background=True)
    sim.add_testbench(monitor)
    sim.run()
    return bursts, gaps


def test_mac_tx_matches_model():
    rng = random.Random(1)
    frames = [bytes(rng.randrange(256) for _ in range(n)) for n in (60, 1, 59, 61, 200, 14)]
    bursts, gaps = rtl_mac_tx(frames, stall_first=3)
    assert bursts == [mac_tx_model(f) for f in frames]
    assert all(g >= IFG for g in gaps[1:])
    assert all(len(b) + IFG == wire_time(len(f)) for b, f in zip(bursts, frames, strict=True))


def test_mac_tx_model_fcs_is_ieee_crc32():
    # 802.3 check value: CRC-32 of "123456789" is 0xCBF43926, sent least significant byte first.
    assert fcs(b"123456789") == bytes.fromhex("2639f4cb")
    assert mac_tx_model(b"")[:8] == PREAMBLE and len(mac_tx_model(b"")) == 8 + 60 + 4


def rtl_mac_rx(bursts, er_at=None):
    """Drive GMII bursts (with 12 idle cycles between); return [(payload, RxError)]."""
    dut = MacRx()
    sim = make_simulator(dut)
    out = []

    async def driver(ctx):
        for k, w in enumerate(bursts):
            for i, b in enumerate(w):
                ctx.set(dut.rx_dv, 1)
                ctx.set(dut.rxd, b)
                ctx.set(dut.rx_er, int(er_at == (k, i)))
                await ctx.tick()
            ctx.set(dut.rx_dv, 0)
            ctx.set(dut.rx_er, 0)
            await ctx.tick().repeat(IFG)

    async def monitor(ctx):
        cur = bytearray()
        first_seen = False
        while True:
            _, _, valid, p = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                if p.first:
                    assert not cur
                    first_seen = True
                assert first_seen
                cur.append(p.data)
                if p.last:
                    out.append((bytes(cur), RxError(p.err)))
                    cur, first_seen = bytearray(), False

    sim.add_testbench(driver)
    sim.add_testbench(monitor, background=True)
    sim.run()
    return out


def test_mac_rx_matches_model():
    rng = random.Random(2)
    frames = [bytes(rng.randrange(256) for _ in range(n)) for n in (60, 100, 61)]
    wires = [mac_tx_model(f) for f in frames]
    bad = bytearray(mac_tx_model(frames[1]))
    bad[30] ^= 0x10                                   # corrupt a data byte: FCS mismatch
    runt = PREAMBLE + bytes(range(40)) + fcs(bytes(range(40)))
    tiny = PREAMBLE + b"\x01\x02\x03"
    noise = bytes([0x55, 0x55, 0x12, 0x34])           # no SFD: nothing comes out
    bursts = wires + [bytes(bad), runt, tiny, noise, wires[0]]
    got = rtl_mac_rx(bursts)
    expected = [r for r in (mac_rx_model(w) for w in bursts) if r is not None]
    assert got == expected
    assert [e for _, e in got] == [RxError.NONE] * 3 + [RxError.FCS, RxError.SHORT,
                                                          RxError.SHORT, RxError.NONE]
    assert got[0][0] == frames[0]


def test_mac_rx_flags_rx_er():
    frame = bytes(range(70))
    got = rtl_mac_rx([mac_tx_model(frame)], er_at=(0, 20))
    assert got == [(frame, RxError.FCS)]


class _Loopback(Elaboratable):
    def __init__(self):
        self.dut = RGMII(rx_domain="eth_rx", tx_clk_mode="delay", tx_delay_ps=0)

    def elaborate(self, platform):
        m = Module()
        m.domains.eth_rx = ClockDomain()
        m.submodules.dut = dut = self.dut
        m.d.comb += [dut.rxd.eq(dut.txd), dut.rx_ctl.eq(dut.tx_ctl)]
        return m


def rtl_rgmii_loop(gmii):
    """Drive GMII bytes into RGMII's transmit side with its pins looped to its receive side."""
    top = _Loopback()
    dut = top.dut
    sim = Simulator(top)
    sim.add_clock(8e-9, domain="sync")
    # The receive clock lags by 90 degrees (2 ns), as RGMII's clock delay provides.
    sim.add_clock(8e-9, phase=8e-9 / 2 + 2e-9, domain="eth_rx")   # default phase: T/2
    out = []

    async def bench(ctx):
        for en, er, d in gmii + [(0, 0, 0)] * 4:
            ctx.set(dut.gmii_tx_en, en)
            ctx.set(dut.gmii_tx_er, er)
            ctx.set(dut.gmii_txd, d)
            await ctx.tick()
            out.append((ctx.get(dut.gmii_rx_dv), ctx.get(dut.gmii_rx_er), ctx.get(dut.gmii_rxd)))

    sim.add_testbench(bench)
    sim.run()
    return out


def test_rgmii_ddr_round_trip():
    rng = random.Random(3)
    gmii = [(rng.randrange(2), rng.randrange(2), rng.randrange(256)) for _ in range(50)]
    out = rtl_rgmii_loop(gmii)
    # ODDR register (1 cycle), IDDR falling-edge sample aligned on the next rising edge
    # (1 cycle), GMII register (1 cycle), sampled by the testbench after its next tick.
    assert out[3:3 + len(gmii)] == gmii


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_parameter_errors_name_the_parameter():
    with pytest.raises(ValueError, match="tx_clk_mode must be 'delay' or 'domain', not 'x'"):
        RGMII(tx_clk_mode="x")
    with pytest.raises(ValueError, match=r"delay_ps must be a number in \[0, 3175\], not 5000"):
        delay_taps(5000)
    with pytest.raises(ValueError, match="taps must be an integer in"):
        Delay(1, taps=200)
    assert delay_taps(2000) == 80
    gc.collect()      # the half-built components warn "never used" here, not in a later test


class _FakeECP5:
    family = "ecp5"


def test_ecp5_primitives_are_instantiated_with_delays():
    from amaranth.back import rtlil

    dut = RGMII(rx_domain="eth_rx", tx_clk_mode="delay", tx_delay_ps=2000, rx_delay_ps=1000)
    top = Module()
    top.domains.eth_rx = ClockDomain()
    top.domains.sync = ClockDomain()
    top.submodules.rgmii = dut
    text = rtlil.convert(top, platform=_FakeECP5(), ports=[dut.rxd, dut.txd, dut.tx_clk])
    assert text.count("cell \\IDDRX1F") == 5          # 4 data + control
    assert text.count("cell \\ODDRX1F") == 6          # 4 data + control + TXC
    assert text.count("cell \\DELAYG") == 6           # 5 receive + TXC
    assert "DEL_VALUE" in text and " 80" in text and " 40" in text
