"""ECP5 PLL divider search against a brute-force numpy model of the EHXPLLL frequency plan."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from combkey.boards.ecp5_pll import LIMITS, PLLConfig, PLLError, ecp5_pll_config

R = np.arange(LIMITS["clki_div"][0], LIMITS["clki_div"][1] + 1)[:, None, None]
F = np.arange(LIMITS["clkfb_div"][0], LIMITS["clkfb_div"][1] + 1)[None, :, None]
P = np.arange(LIMITS["clkop_div"][0], LIMITS["clkop_div"][1] + 1)[None, None, :]


def brute_force_best_error(f_in, f_out):
    """Smallest relative CLKOP error over every legal (R, F, P), or inf if none is legal."""
    f_pfd = f_in / R
    f_op = f_pfd * F
    f_vco = f_op * P
    ok = ((f_pfd >= LIMITS["f_pfd"][0]) & (f_pfd <= LIMITS["f_pfd"][1])
          & (f_op >= LIMITS["f_out"][0]) & (f_op <= LIMITS["f_out"][1])
          & (f_vco >= LIMITS["f_vco"][0]) & (f_vco <= LIMITS["f_vco"][1]))
    err = np.where(ok, np.abs(f_op - f_out) / f_out, np.inf)
    return float(err.min())


def assert_legal(cfg: PLLConfig):
    assert LIMITS["clki_div"][0] <= cfg.clki_div <= LIMITS["clki_div"][1]
    assert LIMITS["clkfb_div"][0] <= cfg.clkfb_div <= LIMITS["clkfb_div"][1]
    assert LIMITS["clkop_div"][0] <= cfg.clkop_div <= LIMITS["clkop_div"][1]
    assert LIMITS["f_pfd"][0] <= cfg.f_pfd <= LIMITS["f_pfd"][1]
    assert LIMITS["f_vco"][0] <= cfg.f_vco <= LIMITS["f_vco"][1]
    for f in (cfg.f_out, *cfg.f_secondary):
        assert LIMITS["f_out"][0] <= f <= LIMITS["f_out"][1]
    for d in cfg.clkos_divs:
        assert LIMITS["clkos_div"][0] <= d <= LIMITS["clkos_div"][1]


@pytest.mark.parametrize("f_in, f_out, divs", [
    (25e6, 50e6, (1, 2, 16)),      # ULX3S / Colorlight default system clock, VCO 800 MHz
    (25e6, 125e6, (1, 5, 6)),      # VCO 750 MHz
    (100e6, 100e6, (1, 1, 8)),     # ECPIX-5 / Versa oscillator straight through, VCO 800 MHz
    (25e6, 400e6, (1, 16, 2)),     # top of the output range
])
def test_named_configs(f_in, f_out, divs):
    cfg = ecp5_pll_config(f_in, f_out)
    assert (cfg.clki_div, cfg.clkfb_div, cfg.clkop_div) == divs
    assert cfg.f_out == f_out
    assert_legal(cfg)


def test_secondary_outputs_share_the_vco():
    cfg = ecp5_pll_config(25e6, 50e6, [250e6])
    assert_legal(cfg)
    assert cfg.f_out == 50e6
    assert cfg.f_secondary == (250e6,)
    assert cfg.f_vco / cfg.clkos_divs[0] == 250e6
    params = cfg.instance_params()
    assert params["p_CLKOS_DIV"] == cfg.clkos_divs[0]
    assert params["p_CLKOS_CPHASE"] == cfg.clkos_divs[0] - 1
    assert params["p_CLKOP_CPHASE"] == cfg.clkop_div - 1
    assert params["p_FEEDBK_PATH"] == "CLKOP"
    assert "p_CLKOS2_DIV" not in params


@settings(max_examples=60, deadline=None)
@given(f_in=st.sampled_from([25e6, 100e6, 125e6, 12e6, 300e6]),
       f_out=st.floats(min_value=3.125e6, max_value=400e6),
       tolerance=st.sampled_from([0.0, 1e-4, 1e-3, 1e-2]))
def test_search_is_legal_and_optimal(f_in, f_out, tolerance):
    best = brute_force_best_error(f_in, f_out)
    if best > tolerance:
        with pytest.raises(PLLError, match=r"f_out .* cannot be made"):
            ecp5_pll_config(f_in, f_out, tolerance=tolerance)
        return
    cfg = ecp5_pll_config(f_in, f_out, tolerance=tolerance)
    assert_legal(cfg)
    assert cfg.error[0] == pytest.approx(best, abs=1e-12)
    assert cfg.error[0] <= tolerance


@pytest.mark.parametrize("kwargs, message", [
    ({"f_in": 25e6, "f_out": 1e9}, r"f_out must be between 3\.125 MHz and 400 MHz .* not 1000 MHz"),
    ({"f_in": 25e6, "f_out": 1e6}, r"f_out must be between .* not 1 MHz"),
    ({"f_in": 4e6, "f_out": 50e6}, r"f_in must be between 8 MHz and 400 MHz"),
    ({"f_in": 25e6, "f_out": "50e6"}, r"f_out must be a frequency in Hz, not '50e6'"),
    ({"f_in": 25e6, "f_out": 48e6}, r"f_out 48 MHz cannot be made from 25 MHz .*closest CLKOP"),
    ({"f_in": 25e6, "f_out": 50e6, "secondary": [1e6]}, r"secondary\[0\] must be between"),
    ({"f_in": 25e6, "f_out": 50e6, "secondary": [100e6] * 4}, r"secondary must list at most 3"),
    ({"f_in": 25e6, "f_out": 50e6, "secondary": [123.457e6, 399e6]},
     r"secondary outputs .* cannot be made together"),
    ({"f_in": 25e6, "f_out": 50e6, "tolerance": 1.5}, r"tolerance must be a relative error"),
])
def test_errors_name_the_parameter(kwargs, message):
    with pytest.raises(PLLError, match=message):
        ecp5_pll_config(**kwargs)
