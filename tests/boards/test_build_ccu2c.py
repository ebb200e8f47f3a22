# amaranth: UnusedElaboratable=no
"""The board build keeps the TDC's own CCU2C chains whole through Yosys (keep_user_ccu2c)."""
from combkey.boards.build import CCU2C_BOX, keep_user_ccu2c, prepare_build
from combkey.boards.registry import get_board


def test_relay_chains_are_boxed_for_synthesis(tmp_path):
    board = get_board("ulx3s-85f")
    p = board.node_params["relay"]
    job = prepare_build("ulx3s-85f", "relay", root=tmp_path)
    n = keep_user_ccu2c(job.plan)
    channels = sum(e.n_pins for e in board.pin_plan if e.port == "tdc__in")
    assert n == channels * p["lines"] * ((p["taps"] + 2) // 2)
    il, ys = job.plan.files["top.il"], job.plan.files["top.ys"]
    assert "cell \\CCU2C " not in il and il.count(f"cell \\{CCU2C_BOX} ") == n
    assert "read_verilog -lib ccu2c_box.v" in ys and f"chtype -map {CCU2C_BOX} CCU2C" in ys
    assert "module COMBKEY_CCU2C" in job.plan.files["ccu2c_box.v"]


def test_transmitter_plan_is_left_alone(tmp_path):
    job = prepare_build("colorlight-5a75b", "transmitter", root=tmp_path)
    before = dict(job.plan.files)
    assert keep_user_ccu2c(job.plan) == 0
    assert job.plan.files == before
