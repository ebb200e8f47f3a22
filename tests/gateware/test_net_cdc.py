# amaranth: UnusedElaboratable=no
"""BusSync (toggle-handshake register crossing) against its edge-by-edge model, with two clocks
of unequal frequency, in both directions, with and without coinciding edges."""
import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from combkey.gateware.net.cdc import BusSync, bus_sync_model


class _Top(wiring.Component):
    def __init__(self, width, init, stages):
        self.dut = BusSync(width, i_domain="src", o_domain="dst", init=init, stages=stages)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.domains.src = ClockDomain()
        m.domains.dst = ClockDomain()
        m.submodules.dut = self.dut
        return m


def rtl_bus_sync(values, *, i_period, i_phase, o_period, o_phase, n_o, width, init=0,
                 stages=2):
    """Run BusSync with the source clock at ``i_period``/``i_phase`` and the destination clock
    at ``o_period``/``o_phase`` (integer ps); return ``o`` before each destination edge."""
    top = _Top(width, init, stages)
    dut = top.dut
    sim = Simulator(top)
    sim.add_clock(i_period * 1e-12, phase=i_phase * 1e-12, domain="src")
    sim.add_clock(o_period * 1e-12, phase=o_phase * 1e-12, domain="dst")
    out = []

    async def driver(ctx):
        for v in values:
            ctx.set(dut.i, int(v))
            await ctx.tick("src")

    async def monitor(ctx):
        for _ in range(n_o):
            _, _, o = await ctx.tick("dst").sample(dut.o)
            out.append(o)

    sim.add_testbench(driver, background=True)
    sim.add_testbench(monitor)
    sim.run()
    return out


# (i_period, i_phase, o_period, o_phase) in ps: sync 50 MHz <-> eth 125 MHz both ways, edges that
# never coincide (odd offsets) and edges that sometimes do, and a near-equal pair.
CLOCKS = [
    (20_000, 10_000, 8_000, 4_001),      # sync -> eth, never coincident
    (8_000, 4_001, 20_000, 10_000),      # eth -> sync, never coincident
    (8_000, 4_000, 20_000, 10_000),      # eth -> sync, every 40 ns coincident
    (20_000, 10_000, 8_000, 2_000),      # sync -> eth, coincident
    (7_000, 3_000, 7_300, 5_100),        # close frequencies, drifting phase
]


@pytest.mark.parametrize("clocks", CLOCKS)
def test_bus_sync_matches_model(clocks):
    i_period, i_phase, o_period, o_phase = clocks
    rng = np.random.default_rng(i_period + o_phase)
    width = 40
    n_o = 300
    n_i = (o_phase + n_o * o_period) // i_period + 2
    values = rng.integers(0, 2**width, n_i, dtype=np.uint64)
    values[:20] = 0x12_3456_789A                 # constant for a while, then random
    values[n_i // 2: n_i // 2 + 40] = 2**width - 1
    init = 0xA5
    want = bus_sync_model(values, i_period=i_period, i_phase=i_phase, o_period=o_period,
                          o_phase=o_phase, n_o=n_o, init=init)
    got = rtl_bus_sync(values, i_period=i_period, i_phase=i_phase, o_period=o_period,
                       o_phase=o_phase, n_o=n_o, width=width, init=init)
    np.testing.assert_array_equal(np.array(got, np.uint64), np.array(want, np.uint64))
    # Every output is an input value, in order, and it is refreshed: many distinct snapshots.
    assert got[0] == init
    seen = [v for v in dict.fromkeys(got[1:]) if v != init]
    index = {int(v): k for k, v in enumerate(values)}
    positions = [index[int(v)] for v in seen]
    assert positions == sorted(positions)
    # A round trip takes at most 3 periods of each clock; the constant stretches (20 and 40
    # source cycles) give one value each.
    random_time = n_o * o_period - 60 * i_period
    assert len(seen) >= random_time // (3 * (i_period + o_period)) - 4


def test_bus_sync_three_stages_matches_model():
    rng = np.random.default_rng(9)
    values = rng.integers(0, 256, 200)
    kw = dict(i_period=8_000, i_phase=4_001, o_period=20_000, o_phase=10_000, n_o=80)
    want = bus_sync_model(values, stages=3, **kw)
    got = rtl_bus_sync(values, width=8, stages=3, **kw)
    np.testing.assert_array_equal(got, want)


def test_bus_sync_parameters_checked():
    with pytest.raises(ValueError, match=r"width must be a positive integer, not 0"):
        BusSync(0, i_domain="a", o_domain="b")
    with pytest.raises(ValueError, match=r"o_domain must differ from i_domain, not 'a'"):
        BusSync(4, i_domain="a", o_domain="a")
    with pytest.raises(ValueError, match=r"stages must be an integer >= 2, not 1"):
        BusSync(4, i_domain="a", o_domain="b", stages=1)
