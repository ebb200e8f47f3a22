"""LinkParams validation: every error names its field (combkey.keyrate.params)."""
import math

import pytest

from combkey.keyrate.params import LinkParams, ParamError

SNS = dict(distance_km=200.0, fiber_loss_db_per_km=0.16, detector_efficiency=0.7,
           dark_count_probability=1e-9, misalignment_error=0.04, pulses=1e12, clock_hz=1e9,
           intensities={"mu_z": 0.45, "mu_1": 0.1, "mu_2": 0.4},
           probabilities={"p_z": 0.8, "epsilon_send": 0.2, "p_1": 0.08, "p_2": 0.04})
MDI = dict(distance_km=150.0, detector_efficiency=0.6, dark_count_probability=1e-8,
           misalignment_error=0.01, pulses=3e12, clock_hz=1e8,
           intensities={"mu_z": 0.636, "mu_y": 0.204, "mu_x": 0.054},
           probabilities={"p_z": 0.754, "p_y": 0.036, "p_x": 0.188, "p_o": 0.022})


def test_defaults_and_derived_quantities():
    p = LinkParams.from_dict(SNS, "sns")
    assert p.ec_efficiency == 1.1 and p.epsilon == 1e-10 and p.channels == 1
    assert p.finite is True and p.aopp is False
    assert p.eta_arm == pytest.approx(0.7 * 10 ** (-0.16 * 200 / 20), rel=1e-12)
    assert p.eta_channel == pytest.approx(10 ** (-3.2), rel=1e-12)
    assert p.dark_total == p.dark_count_probability
    q = LinkParams.from_dict(dict(SNS, crosstalk_cps=35.0), "sns")
    assert q.dark_total == pytest.approx(1e-9 + 35.0 / 1e9)
    r = LinkParams.from_dict(dict(SNS, crosstalk_cps=35.0, detection_window_s=2e-10), "sns")
    assert r.dark_total == pytest.approx(1e-9 + 35.0 * 2e-10)
    assert p.eps_terms == (1e-10, 1e-10, 1e-10)


def test_roundtrip_and_replace():
    p = LinkParams.from_dict(MDI, "mdi")
    assert LinkParams.from_dict(p.to_dict(), "mdi") == p
    q = p.replace(distance_km=100.0)
    assert q.distance_km == 100.0 and q.intensities == p.intensities
    with pytest.raises(ParamError, match="distance_km must be in"):
        p.replace(distance_km=-1.0)


@pytest.mark.parametrize("change, protocol, message", [
    ({"distance_km": None}, "sns", "distance_km is required"),
    ({"detector_efficiency": 1.5}, "sns", r"detector_efficiency must be in \(0, 1\], not 1.5"),
    ({"detector_efficiency": "high"}, "sns", "detector_efficiency must be a number, not 'high'"),
    ({"dark_count_probability": -1e-9}, "sns", "dark_count_probability must be in"),
    ({"misalignment_error": 0.5}, "sns", "misalignment_error must be in"),
    ({"ec_efficiency": 0.9}, "sns", "ec_efficiency must be in"),
    ({"pulses": 0}, "sns", "pulses must be in"),
    ({"clock_hz": 0}, "sns", "clock_hz must be in"),
    ({"epsilon": 0}, "sns", "epsilon must be in"),
    ({"channels": 2.5}, "sns", "channels must be an integer, not 2.5"),
    ({"crosstalk_cps": -3}, "sns", "crosstalk_cps must be in"),
    ({"aopp": "yes"}, "sns", "aopp must be true or false, not 'yes'"),
    ({"finite": 1}, "sns", "finite must be true or false, not 1"),
    ({"aopp": True}, "mdi", "aopp must be false for protocol 'mdi'"),
    ({"distance": 3}, "sns", "unknown field 'distance'"),
    ({"pulses": math.inf}, "sns", "pulses must be finite"),
    ({"intensities": {"mu_z": 0.4, "mu_1": 0.3, "mu_2": 0.2}}, "sns",
     r"intensities.mu_1 must be < mu_2"),
    ({"intensities": {"mu_z": 0.4, "mu_1": 0.1}}, "sns", "intensities.mu_2 is required"),
    ({"intensities": {"mu_z": 0.4, "mu_1": 0.1, "mu_2": 0.3, "mu_3": 1}}, "sns",
     "intensities.mu_3 is not a known key"),
    ({"intensities": {"mu_z": -0.4, "mu_1": 0.1, "mu_2": 0.3}}, "sns",
     "intensities.mu_z must be > 0"),
    ({"probabilities": {"p_z": 0.8, "epsilon_send": 0.2, "p_1": 0.15, "p_2": 0.1}}, "sns",
     r"probabilities.p_z \+ p_1 \+ p_2 must be < 1"),
    ({"probabilities": {"p_z": 0.8, "epsilon_send": 1.2, "p_1": 0.05, "p_2": 0.05}}, "sns",
     r"probabilities.epsilon_send must be in \(0, 1\)"),
    ({"probabilities": {"p_z": 0.7, "p_y": 0.1, "p_x": 0.1, "p_o": 0.05}}, "mdi",
     r"probabilities.p_z \+ p_y \+ p_x \+ p_o must be 1"),
    ({"intensities": {"mu_z": 0.6, "mu_y": 0.05, "mu_x": 0.2}}, "mdi",
     "intensities.mu_x must be < mu_y"),
    ({"intensities": [0.6, 0.2, 0.05]}, "mdi", "intensities must be an object"),
])
def test_errors_name_the_field(change, protocol, message):
    base = dict(SNS if protocol == "sns" else MDI)
    for k, v in change.items():
        if v is None:
            base.pop(k)
        else:
            base[k] = v
    with pytest.raises(ParamError, match=message):
        LinkParams.from_dict(base, protocol)


def test_protocol_checks():
    with pytest.raises(ParamError, match="protocol must be one of"):
        LinkParams.from_dict(SNS, "bb84")
    with pytest.raises(ParamError, match="protocol must be 'mdi' for this command"):
        LinkParams.from_dict(dict(MDI, protocol="sns"), "mdi")
    with pytest.raises(ParamError, match="parameters must be a JSON object"):
        LinkParams.from_dict([1, 2], "sns")
    # SNS intensity names are not MDI names.
    with pytest.raises(ParamError, match="intensities.mu_1 is not a known key"):
        LinkParams.from_dict(dict(MDI, intensities=SNS["intensities"]), "mdi")
