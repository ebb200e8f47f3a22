"""``combkey sim lock`` and ``combkey bench loops``."""
import json

import pytest
from click.testing import CliRunner

from combkey.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("loop,duration,unit", [("phase", "0.02", "rad"),
                                                ("reprate", "60", "Hz"),
                                                ("opll", "0.001", "rad")])
def test_sim_lock_json_has_the_documented_keys(loop, duration, unit):
    r = invoke("sim", "lock", "--loop", loop, "--duration", duration, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    for key in ("locked", "lock_time_s", "residual_rms", "residual_peak", "unit",
                "actuator_travel"):
        assert key in d
    assert d["unit"] == unit and d["locked"] is True
    if loop == "phase":
        assert d["reference_duty_cycle"] == 0.5
        assert 0 < d["qber_x_added"] < 0.05
        assert d["drift_rad_per_ms"] == 4.1


def test_sim_lock_text_and_drift_option():
    r = invoke("sim", "lock", "--loop", "phase", "--duration", "0.02",
               "--drift-rad-per-ms", "1.0")
    assert r.exit_code == 0, r.output
    assert "X-QBER added" in r.output and "residual RMS" in r.output


@pytest.mark.parametrize("args,msg", [
    (("--loop", "opll", "--drift-rad-per-ms", "4"), "--drift-rad-per-ms"),
    (("--loop", "phase", "--duty-cycle", "1.5"), "duty_cycle must be in (0, 1)"),
    (("--loop", "reprate", "--duration", "0"), "--duration"),
])
def test_sim_lock_bad_options_name_the_option(args, msg):
    r = invoke("sim", "lock", *args)
    assert r.exit_code == 2
    assert msg in r.output


@pytest.mark.slow
def test_bench_loops_quick_runs_and_reports_the_figures():
    r = invoke("bench", "loops", "--quick", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    for key in ("phase_residual_rms_rad", "reprate_residual_std_hz",
                "reprate_heater_travel_mk", "opll_lock_time_s", "opll_capture_range_hz"):
        assert d[key] is not None
    for key in ("phase_vs_duty", "opll_capture", "cosim_speed"):
        assert len(d[key]) >= 2
    assert {row["table"] for row in d["rows"]} == {"phase @4.1 rad/ms", "opll capture"}
