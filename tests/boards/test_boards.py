# amaranth: UnusedElaboratable=no
"""Every board x node top elaborates (amaranth build plan, no place-and-route); pin plans map
node ports generically and reject what they cannot place."""
import re

import pytest
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from combkey.boards.base import NodeOnBoard, PinPlanEntry, plan_markdown
from combkey.boards.build import prepare_build
from combkey.boards.ecp5_pll import PLLError
from combkey.boards.nodes import NODE_KINDS, node_factories
from combkey.boards.registry import BOARDS, get_board


def lpf_of(job):
    return job.plan.files["top.lpf"]


def located_sites(lpf):
    return dict(re.findall(r'LOCATE COMP "([^"]+)" SITE "([^"]+)";', lpf))


@pytest.mark.parametrize("node", sorted(NODE_KINDS))
@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_board_node_elaborates(board_name, node, tmp_path):
    job = prepare_build(board_name, node, root=tmp_path)
    board = get_board(board_name)
    lpf = lpf_of(job)
    sites = located_sites(lpf)
    # The oscillator, the UART pair and the heartbeat LED are placed on their balls.
    uart = board.platform_class().lookup(*board.uart_resource)
    uart_sites = {sub.name: sub.ios[0].names[0] for sub in uart.ios if sub.name in ("rx", "tx")}
    assert sites[f"{board.uart_resource[0]}_{board.uart_resource[1]}__rx__io"] == uart_sites["rx"]
    assert sites[f"{board.uart_resource[0]}_{board.uart_resource[1]}__tx__io"] == uart_sites["tx"]
    led = board.platform_class().lookup(*board.led_resource)
    assert led.ios[0].names[0] in sites.values()
    # The PLL output carries the achieved system clock as its constraint.
    assert f'FREQUENCY NET "clocks.clkop" {job.top.pll.f_out}' in lpf
    assert job.top.clk_hz == round(board.default_sys_clk_hz)
    script = job.script()
    assert '"$NEXTPNR_ECP5"' in script and "--report top.nextpnr-report.json" in script
    assert '"$ECPPACK"' in script
    assert job.out_dir == tmp_path / board_name / node


def _signature_from_plan(entries):
    """Build a node signature with one member per pin-plan port (nested on ``__``)."""
    tree = {}
    for e in entries:
        *outer, leaf = e.port.split("__")
        d = tree
        for part in outer:
            d = d.setdefault(part, {})
        d[leaf] = (Out if e.dir == "o" else In)(e.width)

    def build(d):
        return {k: Out(wiring.Signature(build(v))) if isinstance(v, dict) else v
                for k, v in d.items()}
    return {"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)), **build(tree)}


class ProbeNode(wiring.Component):
    """Node top with every port of a pin plan: outputs count, inputs are xor-ed into tx."""

    def __init__(self, entries, *, clk_hz, required_domains=()):
        self.clk_hz = clk_hz
        self.entries = entries
        self.required_domains = required_domains
        super().__init__(_signature_from_plan(entries))

    def elaborate(self, platform):
        m = Module()
        count = Signal(64)
        m.d.sync += count.eq(count + 1)
        ins = []
        for path, member, value in self.signature.flatten(self):
            if path[0] in ("rx", "tx"):
                continue
            if member.flow is Out:
                m.d.comb += value.eq(count[:len(value)])
            else:
                ins.append(value)
        m.d.comb += [self.tx.payload.eq(Cat(*ins).xor()), self.tx.valid.eq(1),
                     self.rx.ready.eq(1)]
        return m


def _top(board, entries, **kwargs):
    _, link_factory, _ = node_factories("transmitter")
    return NodeOnBoard(board, lambda clk_hz: ProbeNode(entries, clk_hz=clk_hz, **kwargs),
                       link_factory)


@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_full_pin_plan_elaborates(board_name):
    board = get_board(board_name)
    top = _top(board, board.pin_plan)
    assert top.needs_fast == any(e.buffer == "oddrx2f" for e in board.pin_plan)
    plan = board.platform().build(top, name="top", do_build=False)
    lpf = plan.files["top.lpf"]
    sites = located_sites(lpf)
    for entry in board.pin_plan:
        for i, ball in enumerate(board.balls(entry)):
            key = f"{entry.resource_name}_0__io[{i}]" if entry.n_pins > 1 \
                else f"{entry.resource_name}_0__io"
            assert sites[key] == ball, entry.port
    rtlil = plan.files["top.il"]
    if top.needs_fast:
        assert rtlil.count("ODDRX2F") >= sum(e.n_pins for e in board.pin_plan
                                              if e.buffer == "oddrx2f")
        assert "ECLKSYNCB" in rtlil and "CLKDIVF" in rtlil
        assert f'FREQUENCY NET "sclk" {board.fast_clk_hz}' in lpf
        assert top.pll.f_secondary == (2 * board.fast_clk_hz,)


@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_pin_plan_markdown_lists_every_port(board_name):
    board = get_board(board_name)
    text = plan_markdown(board)
    for entry in board.pin_plan:
        assert f"`{entry.port}`" in text


def test_unplanned_port_is_named():
    board = get_board("ulx3s-85f")
    entries = (*board.pin_plan[:2], PinPlanEntry("laser__shutter", "0", "o"))
    with pytest.raises(KeyError, match=r"node port 'laser__shutter' has no entry in the pin plan"
                                       r" of board ulx3s-85f"):
        _top(board, entries)


def test_port_width_must_match_pins():
    board = get_board("ulx3s-85f")
    entry = next(e for e in board.pin_plan if e.port == "beat_adc__data")
    narrow = PinPlanEntry(entry.port, " ".join(entry.pins.split()[:10]), "i")
    with pytest.raises(ValueError, match=r"node port 'beat_adc__data' must be 12 bits wide for "
                                         r"the 12 pins .* not 10"):
        _top(board, (narrow,))


def test_port_direction_must_match_plan():
    board = get_board("ulx3s-85f")
    flipped = PinPlanEntry("dac__sclk", "0", "i")
    with pytest.raises(ValueError, match=r"node port 'dac__sclk' is In but the pin plan"):
        _top(board, (flipped,))


@pytest.mark.parametrize("kwargs, message", [
    ({"port": "a b", "pins": "1", "dir": "o"}, r"port must be a flat identifier, not 'a b'"),
    ({"port": "x", "pins": "1", "dir": "io"}, r"dir of pin-plan port 'x' must be 'i' or 'o'"),
    ({"port": "x", "pins": "1", "dir": "o", "buffer": "ddr"}, r"buffer of pin-plan port 'x'"),
    ({"port": "x", "pins": "1", "dir": "i", "buffer": "oddrx2f"}, r"oddrx2f port 'x' must have"),
    ({"port": "x", "pins": " ", "dir": "o"}, r"pins of pin-plan port 'x' must not be empty"),
])
def test_pin_plan_entry_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PinPlanEntry(**kwargs)


def test_sys_clock_that_the_pll_cannot_make(tmp_path):
    with pytest.raises(PLLError, match=r"f_out 48 MHz cannot be made from 25 MHz"):
        prepare_build("ulx3s-85f", "transmitter", sys_clk_hz=48e6, root=tmp_path)


def test_unknown_board_and_node_are_named():
    with pytest.raises(ValueError, match=r"board must be one of .*ulx3s-85f.*, not 'ulx3s'"):
        get_board("ulx3s")
    with pytest.raises(ValueError, match=r"node must be one of relay, transmitter, not 'alice'"):
        node_factories("alice")
