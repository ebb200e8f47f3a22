# amaranth: UnusedElaboratable=no
"""Ethernet on the ECPIX-5: the node tops elaborate with the net block, its registers are in the
map, and LinkMux (UART + UDP sharing the bridge) matches its model cycle by cycle."""
import gc
import random
import re

import numpy as np
import pytest
from amaranth.hdl import Fragment, Module
from amaranth.lib import wiring

from combkey.boards.base import NodeOnBoard
from combkey.boards.build import prepare_build
from combkey.boards.ethernet import ETH_CLK_HZ, LinkMux, LinkMuxModel
from combkey.boards.nodes import node_factories
from combkey.boards.registry import get_board
from combkey.gateware.bridge import CMD_READ, CMD_WRITE, RegBridge, decode_response, encode_request
from combkey.gateware.net.core import EthernetCore
from combkey.gateware.node import RelayNode
from combkey.gateware.regs import Access, Reg, RegisterBank, RegisterMap
from combkey.gateware.stream import make_simulator


def _elaborated(component):
    """Elaborate ``component`` once (no platform), so that no sub-block is left unused."""
    Fragment.get(component, None)
    return component


NET_REGS = [r.name for r in _elaborated(EthernetCore()).registers()]


@pytest.mark.parametrize("node", ["relay", "transmitter"])
def test_ecpix5_node_has_ethernet(node, tmp_path):
    job = prepare_build("ecpix5-85", node, root=tmp_path)
    top = job.top
    assert top.clk_hz == 50_000_000
    # The stack runs in its own 125 MHz eth domain, a PLL output of its own.
    assert "eth" in top.domain_names
    freqs = dict(zip(top.domain_names, (top.pll.f_out, *top.pll.f_secondary), strict=False))
    assert freqs["eth"] == ETH_CLK_HZ and freqs["sync"] == 50e6
    n = top.node
    assert isinstance(n.net, EthernetCore) and n.net.domain == "eth"
    names = [r.name for _, r in n.regmap.all_resources()]
    for reg in NET_REGS:
        assert f"net.{reg}" in names
    assert names[-len(NET_REGS):] == [f"net.{r}" for r in NET_REGS]
    assert n.params_word() >> 31 == 1
    # The PHY pins are placed on the RTL8211's balls, with the ECP5 DDR and delay cells.
    sites = dict(re.findall(r'LOCATE COMP "([^"]+)" SITE "([^"]+)";', job.plan.files["top.lpf"]))
    for sub, ball in (("rx_clk", "E11"), ("tx_clk", "A12"), ("rx_ctrl", "A11"),
                      ("tx_ctrl", "C9")):
        assert sites[f"eth_rgmii_0__{sub}__io"] == ball
    rtlil = job.plan.files["top.il"]
    assert "IDDRX1F" in rtlil and "ODDRX1F" in rtlil and "DELAYG" in rtlil


def test_ethernet_map_extends_plain_map():
    plain = _elaborated(RelayNode(clk_hz=ETH_CLK_HZ, channels=2))
    eth = _elaborated(RelayNode(clk_hz=ETH_CLK_HZ, channels=2, ethernet=True))
    p = [(a, r.name) for a, r in plain.regmap.all_resources()]
    e = [(a, r.name) for a, r in eth.regmap.all_resources()]
    assert e[:len(p)] == p
    assert eth.regmap.map_hash() != plain.regmap.map_hash()
    assert eth.params_word() == plain.params_word() | (1 << 31)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_ethernet_board_needs_a_system_clock_beside_125_mhz():
    board = get_board("ecpix5-85")
    # Without the modulator output, whose fast clock would be a third PLL output.
    factory, link = node_factories("transmitter", {**board.node_params["transmitter"],
                                                   "modulator": 0})
    top = NodeOnBoard(board, factory, link, sys_clk_hz=100e6)     # VCO 500: /5 and /4
    assert top.clk_hz == 100_000_000 and top.pll.f_secondary == (ETH_CLK_HZ,)
    assert top.domain_names == ("sync", "eth")
    # 48 MHz and 125 MHz have no common VCO frequency in 400..800 MHz.
    with pytest.raises(ValueError, match=r"f_out 48 MHz from 100 MHz"):
        NodeOnBoard(board, factory, link, sys_clk_hz=48e6)
    del top
    gc.collect()            # the tops were never elaborated: their warnings are expected here


def test_link_mux_timeout_checked():
    with pytest.raises(ValueError, match=r"timeout_cycles must be an integer >= 2, not 1"):
        LinkMux(timeout_cycles=1)


IN_NAMES = ("a_valid", "a_data", "b_valid", "b_data", "o_ready", "o_rsp_valid", "o_rsp_data",
            "a_rsp_ready", "b_rsp_ready")
OUT_NAMES = ("o_valid", "o_data", "a_ready", "b_ready", "a_rsp_valid", "b_rsp_valid",
             "rsp_data", "o_rsp_ready", "timeouts", "skipped", "answered")


def _mux_ports(dut):
    sigs_in = {"a_valid": dut.a.valid, "a_data": dut.a.payload, "b_valid": dut.b.valid,
               "b_data": dut.b.payload, "o_ready": dut.o.ready, "o_rsp_valid": dut.o_rsp.valid,
               "o_rsp_data": dut.o_rsp.payload, "a_rsp_ready": dut.a_rsp.ready,
               "b_rsp_ready": dut.b_rsp.ready}
    sigs_out = {"o_valid": dut.o.valid, "o_data": dut.o.payload, "a_ready": dut.a.ready,
                "b_ready": dut.b.ready, "a_rsp_valid": dut.a_rsp.valid,
                "b_rsp_valid": dut.b_rsp.valid, "rsp_data": dut.a_rsp.payload,
                "o_rsp_ready": dut.o_rsp.ready, "timeouts": dut.timeouts,
                "skipped": dut.skipped, "answered": dut.answered}
    return sigs_in, sigs_out


def _compare_with_model(inputs, got, timeout):
    """Run LinkMuxModel on the recorded inputs; compare every output of every cycle."""
    model = LinkMuxModel(timeout_cycles=timeout)
    want = [model.step(i) for i in inputs]
    for name in OUT_NAMES:
        g = np.array([c[name] for c in got])
        w = np.array([c[name] for c in want])
        if name in ("o_data", "rsp_data"):
            key = ("o_valid",) if name == "o_data" else ("a_rsp_valid", "b_rsp_valid")
            mask = np.array([any(c[k] for k in key) for c in want], bool)
            g, w = g[mask], w[mask]
        np.testing.assert_array_equal(g, w, err_msg=name)
    return want


def _random_inputs(rng, n):
    """Per-cycle inputs biased towards frame-like bytes (start bytes, small counts), in blocks
    of 40 cycles with busy, sparse or silent clients and bridge (so turns also time out)."""
    def byte():
        return rng.choice([0xC5, 0xC5, CMD_READ, CMD_WRITE, 0, 1, 2, rng.randrange(256)])
    out = []
    for k in range(n):
        if k % 40 == 0:
            pa, pb, pr = (rng.choice([0.0, 0.05, 0.6]) for _ in range(3))
        out.append(dict(a_valid=int(rng.random() < pa), a_data=byte(),
                        b_valid=int(rng.random() < pb), b_data=byte(),
                        o_ready=int(rng.random() < 0.8), o_rsp_valid=int(rng.random() < pr),
                        o_rsp_data=rng.choice([0x5C, 0, 1, 2, rng.randrange(256)]),
                        a_rsp_ready=int(rng.random() < 0.7),
                        b_rsp_ready=int(rng.random() < 0.7)))
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_link_mux_matches_model(seed):
    rng = random.Random(seed)
    timeout = 12
    inputs = _random_inputs(rng, 3000)
    dut = LinkMux(timeout_cycles=timeout)
    sigs_in, sigs_out = _mux_ports(dut)
    got = []

    async def tb(ctx):
        for i in inputs:
            for k, v in i.items():
                ctx.set(sigs_in[k], v)
            got.append({k: ctx.get(s) for k, s in sigs_out.items()})
            await ctx.tick()

    sim = make_simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    want = _compare_with_model(inputs, got, timeout)
    # The stimulus exercised every phase, including timeouts and client switches.
    assert want[-1]["timeouts"] > 0 and want[-1]["skipped"] > 0
    assert sum(c["a_rsp_valid"] for c in want) > 0 and sum(c["b_rsp_valid"] for c in want) > 0


class _MuxBridge(wiring.Component):
    def __init__(self, regmap, timeout):
        self.mux = LinkMux(timeout_cycles=2 * timeout)
        self.bridge = RegBridge(map_size=regmap.size, timeout_cycles=timeout)
        self.bank = RegisterBank(regmap)
        super().__init__({"a": wiring.In(self.mux.a.signature.flip()),
                          "a_rsp": wiring.Out(self.mux.a_rsp.signature),
                          "b": wiring.In(self.mux.b.signature.flip()),
                          "b_rsp": wiring.Out(self.mux.b_rsp.signature)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mux, m.submodules.bridge, m.submodules.bank = \
            self.mux, self.bridge, self.bank
        for name in ("a", "b"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(self.mux, name))
            wiring.connect(m, getattr(self.mux, f"{name}_rsp"),
                           wiring.flipped(getattr(self, f"{name}_rsp")))
        wiring.connect(m, self.mux.o, self.bridge.rx)
        wiring.connect(m, self.bridge.tx, self.mux.o_rsp)
        wiring.connect(m, self.bridge.bus, self.bank.bus)
        return m


def _run_script(script, timeout=64):
    """Send ``[(client, frame)]`` one after the other through LinkMux + bridge + a 3-register
    bank; return the responses, the clients that saw a stray response byte, the final
    register values, the mux and the model's last outputs (the mux is compared with
    LinkMuxModel on every cycle)."""
    regmap = RegisterMap([("", [Reg("magic", 32, Access.R, reset=0x434B4559),
                                Reg("x", 32, Access.RW), Reg("y", 32, Access.RW)])])
    dut = _MuxBridge(regmap, timeout=timeout)
    sigs_in, sigs_out = _mux_ports(dut.mux)
    responses, stray, values, inputs, got = [], [], {}, [], []

    async def recorder(ctx):
        names = list(sigs_in) + list(sigs_out)
        while True:
            _, _, *vals = await ctx.tick().sample(*sigs_in.values(), *sigs_out.values())
            rec = dict(zip(names, vals, strict=True))
            inputs.append({k: rec[k] for k in sigs_in})
            got.append({k: rec[k] for k in sigs_out})

    async def tb(ctx):
        ctx.set(dut.a_rsp.ready, 1)
        ctx.set(dut.b_rsp.ready, 1)
        for name, frame in script:
            src = getattr(dut, name)
            other = "b" if name == "a" else "a"
            for byte in frame:
                ctx.set(src.payload, byte)
                ctx.set(src.valid, 1)
                await ctx.tick().until(src.ready)
            ctx.set(src.valid, 0)
            rsp = bytearray()
            while len(rsp) < 4 or len(rsp) < 6 + 4 * rsp[3]:
                _, _, v, p, ov = await ctx.tick().sample(
                    getattr(dut, f"{name}_rsp").valid, getattr(dut, f"{name}_rsp").payload,
                    getattr(dut, f"{other}_rsp").valid)
                if v:
                    rsp.append(p)
                if ov:
                    stray.append(other)
            responses.append(decode_response(rsp))
        await ctx.tick().repeat(20)
        values.update(x=ctx.get(dut.bank.reg("x").data), y=ctx.get(dut.bank.reg("y").data))

    sim = make_simulator(dut)
    sim.add_testbench(recorder, background=True)
    sim.add_testbench(tb)
    sim.run()
    want = _compare_with_model(inputs, got, 2 * timeout)
    return responses, stray, values, regmap, want[-1]


def test_client_switch_is_not_a_retry():
    """UART (a) writes x with seq 7, then UDP (b) writes y with seq 7: b's write is applied (the
    mux's switch read sits between them; without it the bridge would take b's write for a retry
    of a's). b then repeats its frame with seq 7 and a new value: that is a retry, reported as a
    duplicate and not applied. Each response reaches its own client only."""
    x, y = 1, 2
    script = [("a", encode_request(7, CMD_WRITE, x, 1, [0x1111])),
              ("b", encode_request(7, CMD_WRITE, y, 1, [0x2222])),
              ("b", encode_request(7, CMD_WRITE, y, 1, [0x3333])),
              ("a", encode_request(8, CMD_READ, y, 1))]
    responses, stray, values, regmap, last = _run_script(script)
    assert (regmap.address("x"), regmap.address("y")) == (x, y)
    assert not stray
    assert [r.seq for r in responses] == [7, 7, 7, 8]
    assert all(r.ok for r in responses)
    assert [r.duplicate for r in responses[:3]] == [False, False, True]
    assert responses[3].words == (0x2222,)
    assert values == {"x": 0x1111, "y": 0x2222}
    assert last["answered"] == 0            # the bridge itself recognised b's retry


def test_retry_after_the_other_clients_frame_is_not_reapplied():
    """a writes x (seq 7), b's write comes in between, then a retries seq 7 with another value
    (a lost response): the mux answers it as a duplicate itself and the bridge never sees it.
    A failed write (bad address, seq 9) is not remembered: its retry goes to the bridge again.
    A retry with no other frame in between is left to the bridge."""
    x, y, bad = 1, 2, 40
    script = [("a", encode_request(7, CMD_WRITE, x, 1, [0x1111])),
              ("b", encode_request(3, CMD_WRITE, y, 1, [0x2222])),
              ("a", encode_request(7, CMD_WRITE, x, 1, [0x9999])),     # retry: not applied
              ("b", encode_request(3, CMD_WRITE, y, 1, [0x8888])),     # retry: not applied
              ("a", encode_request(9, CMD_WRITE, bad, 1, [0x1])),      # bad address
              ("b", encode_request(4, CMD_READ, x, 1)),
              ("a", encode_request(9, CMD_WRITE, bad, 1, [0x1])),      # retried: fails again
              ("a", encode_request(10, CMD_WRITE, y, 1, [0x3333])),
              ("a", encode_request(10, CMD_WRITE, y, 1, [0x4444]))]    # retry, same client
    responses, stray, values, _, last = _run_script(script)
    assert not stray
    assert [r.seq for r in responses] == [7, 3, 7, 3, 9, 4, 9, 10, 10]
    assert [r.duplicate for r in responses] == [False, False, True, True, False, False, False,
                                                False, True]
    assert [r.ok for r in responses] == [True] * 4 + [False, True, False, True, True]
    assert responses[5].words == (0x1111,)
    assert values == {"x": 0x1111, "y": 0x3333}
    # Only a's first retry was answered by the mux: b's retry came while the bridge's last
    # frame was still b's write (the mux's own answer does not reach the bridge).
    assert last["answered"] == 1
