# amaranth: UnusedElaboratable=no
"""Every board x node top elaborates (amaranth build plan, no place-and-route); pin plans map
node ports generically and reject what they cannot place."""
import pathlib
import re

import pytest

from combkey.boards.base import FAST_BUFFERS, NodeOnBoard, PinPlanEntry, plan_markdown, trellis_pios
from combkey.boards.build import prepare_build
from combkey.boards.ecp5_pll import PLLError
from combkey.boards.nodes import NODE_KINDS, node_factories
from combkey.boards.probe import PinPlanProbe
from combkey.boards.registry import BOARDS, get_board


def lpf_of(job):
    return job.plan.files["top.lpf"]


def ball(board, pin):
    """Resolve an amaranth pin name (``B2`` or connector-relative ``j_1:1``) to its ball."""
    if ":" not in pin:
        return pin
    conn, number = pin.split(":")
    name, index = conn.rsplit("_", 1)
    return board.platform_class().connectors[(name, int(index))].mapping[number]


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
    led = board.platform().lookup(*board.led_resource[:2])
    if len(board.led_resource) == 3:
        led = next(sub for sub in led.ios if sub.name == board.led_resource[2])
    assert ball(board, led.ios[0].names[0]) in sites.values()
    # nextpnr derives the system clock constraint from the PLL's frequency attributes.
    assert f'FREQUENCY_PIN_CLKOP "{job.top.pll.f_out / 1e6:.6f}"' in job.plan.files["top.il"]
    assert job.top.clk_hz == round(board.default_sys_clk_hz)
    script = job.script()
    assert '"$NEXTPNR_ECP5"' in script and "--report top.nextpnr-report.json" in script
    assert '"$ECPPACK"' in script
    assert job.out_dir == tmp_path / board_name / node


def _top(board, entries, **kwargs):
    _, link_factory = node_factories("transmitter")
    return NodeOnBoard(board, lambda clk_hz: PinPlanProbe(entries, clk_hz=clk_hz, **kwargs),
                       link_factory)


@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_full_pin_plan_elaborates(board_name):
    board = get_board(board_name)
    top = _top(board, board.pin_plan)
    assert top.needs_fast == any(e.buffer in FAST_BUFFERS for e in board.pin_plan)
    plan = board.platform().build(top, name="top", do_build=False)
    lpf = plan.files["top.lpf"]
    sites = located_sites(lpf)
    for entry in board.pin_plan:
        for i, ball in enumerate(board.balls(entry)):
            key = f"{entry.resource_name}_0__io[{i}]" if entry.n_pins > 1 \
                else f"{entry.resource_name}_0__io"
            assert sites[key] == ball, entry.port
    rtlil = plan.files["top.il"]
    if top.needs_fast and not top.fast_direct:
        assert rtlil.count("ODDRX2F") >= sum(e.n_pins for e in board.pin_plan
                                              if e.buffer == "oddrx2f")
        assert "ECLKSYNCB" in rtlil and "CLKDIVF" in rtlil
        assert f'FREQUENCY_PIN_CLKOS "{2 * board.fast_clk_hz / 1e6:.6f}"' in rtlil
        assert top.pll.f_secondary == (2 * board.fast_clk_hz,)
    elif top.needs_fast:
        # Only ODDRX1F ("ddr") ports: ``fast`` straight from the PLL, no edge-clock tree.
        assert not any(e.buffer == "oddrx2f" for e in board.pin_plan)
        assert "ECLKSYNCB" not in rtlil and "ODDRX1F" in rtlil
        assert top.pll.f_secondary == (board.fast_clk_hz,)


def trellis_banks(board):
    return {ball: bank for ball, (bank, _row, _col) in trellis_pios(board).items()}


@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_pin_plan_balls_exist_and_gearing_sits_in_side_banks(board_name):
    board = get_board(board_name)
    banks = trellis_banks(board)
    used = {}
    for entry in board.pin_plan:
        for b in board.balls(entry):
            assert b in banks, f"{entry.port}: ball {b} not in {board.device}"
            assert b not in used, f"{entry.port} and {used.get(b)} share ball {b}"
            used[b] = entry.port
            # Bank 8 holds the configuration pins; ecppack aborted on a design using them.
            assert banks[b] != 8, f"{entry.port}: {b} is a configuration-bank ball"
            if entry.buffer == "oddrx2f":
                # ODDRX2F exists only in the left (6, 7) and right (2, 3) banks.
                assert banks[b] in (2, 3, 6, 7), f"{entry.port}: {b} is in bank {banks[b]}"


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
    ({"port": "x", "pins": "1", "dir": "o", "buffer": "lvds"}, r"buffer of pin-plan port 'x'"),
    ({"port": "x", "pins": "1", "dir": "i", "buffer": "oddrx2f"}, r"oddrx2f port 'x' must have"),
    ({"port": "x", "pins": "1", "dir": "i", "buffer": "ddr"}, r"ddr port 'x' must have dir 'o'"),
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


@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_docs_carry_the_current_pin_plan(board_name):
    docs = pathlib.Path(__file__).parents[2] / "docs" / "boards.md"
    assert plan_markdown(get_board(board_name)) in docs.read_text(), \
        "docs/boards.md is stale: regenerate its pin-plan tables with plan_markdown()"


@pytest.mark.parametrize("global_reset", [(), ("sync",)])
def test_reset_on_global_network_where_the_board_asks(global_reset, tmp_path, monkeypatch):
    """With ``sync`` in the board's ``global_reset`` the sync reset leaves its synchroniser
    through a DCCA (a global network); without, it is plain fabric routing."""
    import dataclasses

    from combkey.boards import ulx3s
    board = dataclasses.replace(ulx3s.BOARD, global_reset=global_reset)
    monkeypatch.setattr(ulx3s, "BOARD", board)
    job = prepare_build(board.name, "relay", root=tmp_path)
    il = job.plan.files["top.il"]
    dcc = re.search(r"cell \\DCCA \\rst_dcc_sync\n(.*?)\n  end", il, re.S)
    if global_reset:
        assert dcc is not None, "no DCCA on the sync reset"
        assert re.search(r"connect \\CLKO ", dcc.group(1))
    else:
        assert dcc is None


@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_relay_delay_lines_cover_the_clock_period(board_name):
    from combkey.gateware.timing.tdc import ECP5_TAP_PS
    board = get_board(board_name)
    taps = board.node_params["relay"]["taps"]
    assert taps * ECP5_TAP_PS >= 1.05 * 1e12 / board.default_sys_clk_hz


def test_relay_with_short_delay_lines_is_refused(tmp_path):
    board = get_board("ulx3s-85f")
    params = dict(board.node_params["relay"], taps=64)
    factory, link_factory = node_factories("relay", params)
    with pytest.raises(ValueError, match=r"taps must cover the 20000 ps clock period with 1.05x "
                                         r"margin at 43 ps per tap \(at least 489 taps\), "
                                         r"not 64 \(2752 ps\)"):
        NodeOnBoard(board, factory, link_factory)
