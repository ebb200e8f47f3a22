"""Host side of the tagger: calibration over a device, model relay, CLI, bench smoke."""
import numpy as np
from click.testing import CliRunner

from combkey.cli import cli
from combkey.gateware.timing.tdc import UNITS_PER_CYCLE, DelayLineConfig
from combkey.sim.detector import DetectorConfig
from combkey.tagger import ModelRelay, calibrate_device, simulate_relay, timestamp_errors


def test_calibrate_device_writes_tables_and_improves_rms():
    cfg = DelayLineConfig(seed=5)
    dev = ModelRelay(channels=2, dl_cfg=cfg, seed=2)
    rng = np.random.default_rng(1)
    before = timestamp_errors(dev.models[0], dev.table[0], 20_000, rng)
    hist, tables = calibrate_device(dev, 2, dev.n_codes, hits=20_000)
    assert hist.sum(axis=1).min() >= 20_000
    np.testing.assert_array_equal(dev.table[:, :dev.n_codes], tables)
    assert dev.regs["tagger.raw"] == 0
    after = timestamp_errors(dev.models[0], dev.table[0], 20_000, rng)
    assert np.sqrt(np.mean(after ** 2)) < 15.0 < np.sqrt(np.mean(before ** 2))


def test_simulated_relay_records_and_accounting():
    sim = simulate_relay(n_slots=20_000, channels=2, mu=0.2, seed=4,
                         det_cfg=DetectorConfig(dead_time_ps=2000, jitter_ps=20))
    cnt = sim["counters"]
    assert cnt["clicks"] == len(sim["tags"])
    assert cnt["clicks"] - cnt["out_of_gate"] >= sum(r["clicks"] for r in sim["records"])
    assert sim["detected"] >= len(sim["tags"]) > 0.9 * sim["detected"]
    assert sum(cnt[f"pattern_{p}"] for p in range(16)) == len(sim["records"])
    assert any(r["double"] for r in sim["records"])
    ss, ph, singles = sim["hist"]
    assert singles.sum() == cnt["clicks"]
    # phases cluster at a quarter of the 3840-unit slot (+ lead offsets), bins of 4 units
    assert abs(int(ph.argmax()) * 4 - 960) < 600
    assert UNITS_PER_CYCLE % 3840 == 0


def test_cli_calibrate_and_histogram(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["tagger", "calibrate", "--channels", "2", "--hits", "2000",
                              "--out", str(tmp_path / "cal.npz")])
    assert res.exit_code == 0, res.output
    assert "dnl_max_lsb" in res.output
    assert np.load(tmp_path / "cal.npz")["tables"].shape == (2, 513)
    res = runner.invoke(cli, ["tagger", "histogram", "--kind", "phase", "--shift", "2",
                              "--channels", "2", "--bins", "64", "--out",
                              str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_cli_errors_name_the_option():
    runner = CliRunner()
    res = runner.invoke(cli, ["tagger", "calibrate", "--hits", "10"])
    assert res.exit_code != 0 and "--hits must be at least 100" in res.output
    res = runner.invoke(cli, ["tagger", "histogram", "--start", "40"])
    assert res.exit_code != 0 and "ss_start must be an int in 0..31" in res.output


def test_ecp5_netlist_keeps_delay_line_chain(tmp_path):
    """The synthesized delay line is one linked CCU2C chain with every input connected."""
    from amaranth.back import rtlil

    from combkey.gateware.timing.tdc import SYNTH_PLATFORM, ECP5DelayLine, delay_line_placement
    from combkey.tagger import ecp5_netlist
    bels = delay_line_placement((12, 20), 5)
    netlist = ecp5_netlist(rtlil.convert(ECP5DelayLine(8, placement=bels), name="top",
                                         platform=SYNTH_PLATFORM), tmp_path)
    cells = {n: c for n, c in netlist["modules"]["top"]["cells"].items()
             if c["type"] == "CCU2C"}
    assert sorted(cells) == [f"cc{k}" for k in range(5)]
    for k in range(5):
        c = cells[f"cc{k}"]
        assert all(c["connections"][p] != ["x"] for p in ("A0", "B0", "A1", "CIN")), c
        assert c["attributes"]["BEL"] == bels[k]
        if k:
            assert c["connections"]["CIN"] == cells[f"cc{k - 1}"]["connections"]["COUT"]


def test_board_relay_figures_follow_each_boards_delay_lines():
    """One row per board, calibrated from that board's relay lines and clock: the code-density
    bin is the period over the codes used (about tap / lines), and calibration improves RMS."""
    from combkey.boards.registry import BOARDS, get_board
    from combkey.tagger import board_relay_figures
    rows = board_relay_figures(20_000, 4_000, np.random.default_rng(3))
    assert [r["board"] for r in rows] == sorted(BOARDS)
    for r in rows:
        p = get_board(r["board"]).node_params["relay"]
        assert (r["lines"], r["taps"]) == (p["lines"], p["taps"])
        assert abs(r["bin_ps"] - 43.0 / p["lines"]) < 0.1 * 43.0 / p["lines"]
        assert r["rms_error_ps_after_cal"] < r["rms_error_ps_before_cal"]
