# amaranth: UnusedElaboratable=no
"""Full place-and-route runs (``make test-slow``): minutes on two cores, not in ``make test``."""
import json

import pytest

from combkey.boards.build import build_pin_plan_probe, run_build
from combkey.boards.registry import BOARDS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_whole_pin_plan_places_routes_and_meets_timing(board_name, tmp_path):
    report = build_pin_plan_probe(board_name, root=tmp_path)
    assert report["timing_met"], report["clocks"]
    assert report["bitstream"] is not None
    # The DDR lanes' fast domain is timed against the constraint nextpnr derives via CLKDIVF.
    assert set(report["clocks"]) == {"sync", "fast"}, report["clocks"]
    assert report["clocks"]["fast"]["constraint_mhz"] == 125.0


def test_ulx3s_transmitter_bitstream_and_report(tmp_path):
    report = run_build("ulx3s-85f", "transmitter", root=tmp_path)
    out = tmp_path / "ulx3s-85f" / "transmitter"
    assert (out / "top.bit").stat().st_size > 100_000
    assert json.loads((out / "report.json").read_text()) == report
    assert report["timing_met"] and report["clocks"]["sync"]["constraint_mhz"] == 50.0
    assert report["utilisation"]["LUT4"]["used"] > 0
    assert report["source"] == "report"
