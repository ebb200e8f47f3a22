"""``combkey keyrate sns|mdi`` CLI: output fields, validation messages, sweep and plot."""
import json

import pytest
from click.testing import CliRunner

from combkey.cli import cli
from combkey.keyrate import LinkParams, optimize, plob, sns_rate

SNS = dict(distance_km=200.0, fiber_loss_db_per_km=0.16, detector_efficiency=0.7,
           dark_count_probability=1e-9, misalignment_error=0.04, pulses=1e13, clock_hz=1e9,
           channels=16, aopp=True,
           intensities={"mu_z": 0.45, "mu_1": 0.1, "mu_2": 0.4},
           probabilities={"p_z": 0.8, "epsilon_send": 0.25, "p_1": 0.08, "p_2": 0.04})
MDI = dict(distance_km=150.0, detector_efficiency=0.6, dark_count_probability=1e-8,
           misalignment_error=0.01, pulses=3e12, clock_hz=1e8,
           intensities={"mu_z": 0.636, "mu_y": 0.204, "mu_x": 0.054},
           probabilities={"p_z": 0.754, "p_y": 0.036, "p_x": 0.188, "p_o": 0.022})


def run(tmp_path, protocol, params, *extra):
    path = tmp_path / "link.json"
    path.write_text(json.dumps(params))
    return CliRunner().invoke(cli, ["keyrate", protocol, "--params", str(path), *extra])


@pytest.mark.parametrize("protocol, params, keys", [
    ("sns", SNS, ("s1_lower", "e1_upper")), ("mdi", MDI, ("s11_lower", "e11_upper"))])
def test_json_output(tmp_path, protocol, params, keys):
    res = run(tmp_path, protocol, params, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    p = LinkParams.from_dict(params, protocol)
    assert out["key_rate_per_pulse"] > 0
    assert out["key_rate_bps"] == pytest.approx(out["key_rate_per_pulse"] * p.clock_hz
                                                * p.channels)
    assert out["plob_per_pulse"] == pytest.approx(plob(p.eta_channel))
    assert out["plob_relative_per_pulse"] == pytest.approx(
        plob(p.eta_channel * p.detector_efficiency))
    assert out["intensities"] == params["intensities"]
    assert out["probabilities"] == params["probabilities"]
    for k in keys:
        assert out[k] > 0
    assert out["abort_reason"] is None and out["key_bits"] > 0
    assert out["params"]["distance_km"] == params["distance_km"]
    assert out["epsilon_total"] > 0 and out["ledger"]["uses"]


def test_text_output(tmp_path):
    res = run(tmp_path, "sns", SNS)
    assert res.exit_code == 0, res.output
    assert "per pulse" in res.output and "bit/s" in res.output and "PLOB" in res.output
    assert "s1_lower" in res.output and "mu_z=0.45" in res.output


@pytest.mark.parametrize("protocol, change, message", [
    ("sns", {"detector_efficiency": 2.0}, "detector_efficiency must be in"),
    ("sns", {"pulses": "many"}, "pulses must be a number, not 'many'"),
    ("mdi", {"probabilities": {"p_z": 0.5, "p_y": 0.1, "p_x": 0.1, "p_o": 0.1}},
     "probabilities.p_z + p_y + p_x + p_o must be 1"),
    ("mdi", {"aopp": True}, "aopp must be false for protocol 'mdi'"),
])
def test_invalid_params_name_the_field(tmp_path, protocol, change, message):
    base = dict(SNS if protocol == "sns" else MDI, **change)
    res = run(tmp_path, protocol, base)
    assert res.exit_code == 2
    assert message in res.output


def test_invalid_json_and_usage(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    res = CliRunner().invoke(cli, ["keyrate", "sns", "--params", str(path)])
    assert res.exit_code == 2 and "is not valid JSON" in res.output
    res = run(tmp_path, "sns", SNS, "--plot", str(tmp_path / "x.png"))
    assert res.exit_code == 2 and "--plot needs --sweep-km" in res.output
    res = run(tmp_path, "sns", SNS, "--sweep-km", "300:100:10")
    assert res.exit_code == 2 and "--sweep-km" in res.output


def test_sweep_and_plot(tmp_path):
    png = tmp_path / "rate.png"
    res = run(tmp_path, "sns", SNS, "--sweep-km", "100:300:100", "--plot", str(png), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    rows = out["rows"]
    assert [r["distance_km"] for r in rows] == [100.0, 200.0, 300.0]
    rates = [r["key_rate_per_pulse"] for r in rows]
    assert rates[0] > rates[1] > rates[2] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = run(tmp_path, "mdi", MDI, "--sweep-km", "50:150:50")
    assert text.exit_code == 0 and "PLOB" in text.output and len(text.output.splitlines()) == 4


def test_optimise_is_not_worse_than_the_given_settings(tmp_path):
    p = LinkParams.from_dict(dict(SNS, pulses=1e12, channels=1), "sns")
    given = sns_rate(p).key_rate_per_pulse
    o = optimize(p)
    assert o.result.key_rate_per_pulse >= given
    res = run(tmp_path, "sns", dict(SNS, pulses=1e12, channels=1), "--optimize", "--json")
    out = json.loads(res.output)
    assert out["optimised"] and out["key_rate_per_pulse"] == pytest.approx(
        o.result.key_rate_per_pulse, rel=1e-9)
    # absent settings are optimised
    bare = {k: v for k, v in SNS.items() if k not in ("intensities", "probabilities")}
    out = json.loads(run(tmp_path, "sns", dict(bare, pulses=1e12, channels=1), "--json").output)
    assert out["optimised"] and out["key_rate_per_pulse"] > 0
