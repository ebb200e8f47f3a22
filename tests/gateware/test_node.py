# amaranth: UnusedElaboratable=no
"""Node tops: parameters, register maps, ports for the pin plans, and the transmitter's beat
ADC capture against its model (cycle by cycle)."""
import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.lib import wiring

from combkey.boards.registry import BOARDS, get_board
from combkey.gateware.node import (
    IDENTITY_REGS,
    PARAMS_ADDR,
    RelayNode,
    SplitBank,
    TransmitterIO,
    TransmitterNode,
    beat_capture_model,
    node_class,
    node_regmap,
    node_regmap_from_params,
)
from combkey.gateware.stream import make_simulator


def flat_ports(node):
    Fragment.get(node, None)        # the node's blocks are elaborated (used)
    return {"__".join(str(p) for p in path): member.flow
            for path, member, _ in node.signature.flatten(node)}


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": 0}, "channels must be an int in 1..16, not 0"),
    ({"channels": True}, "channels must be an int in 1..16, not True"),
    ({"lanes": 3}, "lanes must be 1, 2, 4 or 8, not 3"),
    ({"prob_bits": 8}, "prob_bits must be an int in"),
])
def test_transmitter_parameters_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransmitterNode(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": 0}, "channels must be a positive int, not 0"),
    ({"channels": 33}, "channels must be at most 32, not 33"),
    ({"taps": 1}, "taps must be at least 2, not 1"),
])
def test_relay_parameters_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RelayNode(**kwargs)


def test_maps_follow_the_parameters():
    tx = node_regmap("transmitter", channels=3, lanes=2)
    assert all(f"pattern{c}.ctrl" in tx for c in range(3)) and "pattern3.ctrl" not in tx
    for prefix in ("opll.", "fcount.", "reprate.", "io."):
        assert any(r.name.startswith(prefix) for r in tx)
    relay = node_regmap("relay", channels=4)
    assert "tdc.dead_3" in relay and "tdc.dead_4" not in relay
    for name in ("cls.records", "tagger.tags", "cls.record_level", "phase.est.min_counts",
                 "ref.est", "ref.event"):
        assert name in relay
    for regmap in (tx, relay):
        assert [regmap.address(r.name) for r in IDENTITY_REGS] == [0, 1, 2, 3, 4, 5, 6, 8]
        assert regmap.address("params") == PARAMS_ADDR
    assert tx.map_hash() != node_regmap("transmitter").map_hash()


@pytest.mark.parametrize("board_name", sorted(BOARDS))
@pytest.mark.parametrize("kind", ["transmitter", "relay"])
def test_params_register_rebuilds_each_board_map(board_name, kind):
    params = get_board(board_name).node_params.get(kind, {})
    node = node_class(kind)(**params)
    Fragment.get(node, None)
    rebuilt = node_regmap_from_params(kind, node.params_word())
    assert rebuilt.map_hash() == node.regmap.map_hash()


def test_params_register_that_no_node_matches_is_named():
    with pytest.raises(ValueError, match="params register 0x00000000 of a transmitter node"):
        node_regmap_from_params("transmitter", 0)


def test_ports_carry_the_pin_plan_names():
    tx = flat_ports(TransmitterNode())
    relay = flat_ports(RelayNode(channels=2))
    assert tx["beat_adc__data"] is wiring.In and tx["beat_adc__clk"] is wiring.Out
    assert tx["beat_adc__otr"] is wiring.In
    assert relay["tdc__in"] is wiring.In
    assert relay["link_records__payload"] is wiring.Out
    assert relay["link_records__ready"] is wiring.In
    for ports in (tx, relay):
        assert {"rx__payload", "tx__payload", "heartbeat"} <= set(ports)


@pytest.mark.parametrize("beat_div", [0, 1, 3])
def test_beat_capture_matches_model(beat_div):
    rng = np.random.default_rng(beat_div)
    n = 120
    words = rng.integers(0, 4096, n)
    words[:4] = [0x000, 0x7FF, 0x800, 0xFFF]
    otr = rng.integers(0, 2, n)
    dut = TransmitterIO()
    got = {k: [] for k in ("clk", "valid", "sample", "otr_count")}

    async def tb(ctx):
        ctx.set(dut.beat_div, beat_div)
        ctx.set(dut.sample.ready, 1)
        for k in range(n):
            ctx.set(dut.beat_data, int(words[k]))
            ctx.set(dut.beat_otr, int(otr[k]))
            await ctx.tick()
            got["clk"].append(ctx.get(dut.beat_clk))
            got["valid"].append(ctx.get(dut.sample.valid))
            got["sample"].append(ctx.get(dut.beat_sample))
            got["otr_count"].append(ctx.get(dut.otr_count))
            if got["valid"][-1]:
                assert ctx.get(dut.sample.payload) == got["sample"][-1]
                assert ctx.get(dut.comparator) == int(got["sample"][-1] >= 0)
        assert ctx.get(dut.beat_overruns) == 0

    sim = make_simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    want = beat_capture_model(words, otr, beat_div)
    for key in got:
        np.testing.assert_array_equal(np.array(got[key]), want[key], err_msg=key)
    assert want["valid"].sum() == n // (2 * max(beat_div, 1))


def test_beat_capture_counts_overruns():
    dut = TransmitterIO()

    async def tb(ctx):
        ctx.set(dut.beat_div, 1)       # a sample every 2 cycles, never taken
        await ctx.tick().repeat(21)
        assert ctx.get(dut.sample.valid) == 1
        # Samples at edges 0, 2, ..., 20: 11, each after the first overruns the held one.
        assert ctx.get(dut.beat_overruns) == 10

    sim = make_simulator(dut)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("pipelined", [False, True])
def test_split_bank_matches_the_bank_model(pipelined):
    """SplitBank against the single-bank model: random reads and writes over the whole map,
    one request per cycle, wide registers across a sub-bank boundary included; the read data
    of the request issued at cycle i is taken at cycle i + read_latency."""
    from combkey.gateware.regs import Access, BankModel, Reg, RegisterMap

    regs = [Reg(f"r{i}", 64 if i % 5 == 0 else 32, Access.RW, reset=i) for i in range(40)]
    regs += [Reg("ro", 64, Access.R)]
    regmap = RegisterMap([("", regs)])
    dut = SplitBank(regmap, max_words=8, pipelined=pipelined)
    assert len(dut.parts) > 4
    assert dut.read_latency == (3 if pipelined else 1)
    model = BankModel(regmap)
    model.inputs["ro"] = 0x0123_4567_89AB_CDEF
    rng = np.random.default_rng(4)
    ops = [(int(rng.integers(0, 3)), int(rng.integers(0, regmap.size + 3)),
            int(rng.integers(0, 1 << 32))) for _ in range(300)]
    got, want = [], []

    async def tb(ctx):
        ctx.set(dut.reg("ro").data, model.inputs["ro"])
        trace = []
        for kind, addr, value in ops + [(0, 0, 0)] * 4:
            ctx.set(dut.bus.addr, addr)
            ctx.set(dut.bus.w_data, value)
            ctx.set(dut.bus.w_en, kind == 1)
            ctx.set(dut.bus.r_en, kind == 2)
            await ctx.tick()
            trace.append(ctx.get(dut.bus.r_data))
        ctx.set(dut.bus.r_en, 0)
        for i, (kind, _, _) in enumerate(ops):
            if kind == 2:
                got.append(trace[i + dut.read_latency - 1])
        for reg in regmap:
            if reg.access is Access.RW:
                got.append(ctx.get(dut.reg(reg.name).data))

    for kind, addr, value in ops:
        if kind == 1:
            model.write(addr, value)
        elif kind == 2:
            want.append(model.read(addr))
    want += [model.values[r.name] for r in regmap if r.access is Access.RW]
    sim = make_simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    assert got == want
