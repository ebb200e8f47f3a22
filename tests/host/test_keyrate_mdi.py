"""Four-intensity MDI-QKD engine with double scanning (combkey.keyrate.mdi)."""
import math

import numpy as np
import pytest
from scipy.stats import poisson

from combkey.keyrate import LinkParams, mdi_expected_counts, mdi_finite_key, mdi_rate, plob
from combkey.keyrate.mdi import MDI_CLASSES, MDICounts, mdi_gains

# Seed 002 (Yan et al. 2025): stated intensities and probabilities at 30 dB.
INT = {"mu_z": 0.636, "mu_y": 0.204, "mu_x": 0.054}
PROB = {"p_z": 0.754, "p_y": 0.036, "p_x": 0.188, "p_o": 0.022}
BASE = dict(distance_km=150.0, fiber_loss_db_per_km=0.2, detector_efficiency=0.6,
            dark_count_probability=1e-8, misalignment_error=0.01, misalignment_error_x=0.01,
            pulses=3e12, clock_hz=1e8, intensities=INT, probabilities=PROB)


def link(**kw):
    return LinkParams.from_dict(dict(BASE, **kw), "mdi")


def true_s11(eta, pd, ed):
    """Single-photon-pair yield of the X-basis gain model, by Richardson extrapolation of the
    mixed derivative of e^{ka+kb} Q(ka, kb) at the origin."""
    def f(ka, kb):
        return math.exp(ka + kb) * float(mdi_gains(eta, eta, ka, kb, pd, ed, "X")[0])

    def d(h):
        return (f(h, h) - f(h, 0) - f(0, h) + f(0, 0)) / h ** 2
    return 2 * d(1e-3) - d(2e-3)


def test_gain_model_limits():
    # Z basis without noise: the error rate is the misalignment exactly
    q, eq = mdi_gains(0.01, 0.01, 0.5, 0.5, 0.0, 0.03, "Z")
    assert eq / q == pytest.approx(0.03, rel=1e-12)
    # X basis of coherent states: error rate about 25 % or more even without misalignment
    for mu in (0.01, 0.1, 0.5):
        q, eq = mdi_gains(0.01, 0.01, mu, mu, 0.0, 0.0, "X")
        assert 0.245 < eq / q < 0.26
    # vacuum-vacuum needs two dark counts
    q, _ = mdi_gains(0.01, 0.01, 0.0, 0.0, 1e-6, 0.0, "X")
    assert q == pytest.approx(4 * 1e-12 * (1 - 1e-6) ** 2, rel=1e-9)
    with pytest.raises(ValueError, match="basis must be"):
        mdi_gains(0.01, 0.01, 0.1, 0.1, 0.0, 0.0, "Y")


def test_expected_counts_consistency():
    p = link()
    c = mdi_expected_counts(p, INT, PROB)
    assert set(c.sent) == {(a, b) for a in MDI_CLASSES for b in MDI_CLASSES}
    assert sum(c.sent.values()) == pytest.approx(p.pulses, rel=1e-12)
    assert c.zz_bits == c.detected[("z", "z")] and c.zz_errors == c.errors[("z", "z")]
    assert c.zz_errors / c.zz_bits == pytest.approx(0.01, abs=2e-3)
    assert 0.25 <= c.xx_errors / c.detected[("x", "x")] < 0.3


@pytest.mark.parametrize("km", [0, 50, 100, 150, 200])
def test_s11_bound_below_model_truth(km):
    p = link(distance_km=km, finite=False)
    r = mdi_rate(p)
    s11 = true_s11(p.eta_arm, p.dark_total, p.misalignment_x)
    assert 0.9 * s11 < r.bounds["s11_lower"] <= s11


def _counts_from_yields(s, t, intensities, n=1.0):
    """Counts (expected, per unit 'sent') of a model with photon-number yields s_jk and error
    yields t_jk."""
    mus = {"o": 0.0, "x": intensities["mu_x"], "y": intensities["mu_y"],
           "z": intensities["mu_z"]}
    k = np.arange(s.shape[0])
    c = MDICounts(pulses=n)
    for a in MDI_CLASSES:
        for b in MDI_CLASSES:
            pa, pb = poisson.pmf(k, mus[a]), poisson.pmf(k, mus[b])
            c.sent[(a, b)] = n
            c.detected[(a, b)] = n * float(pa @ s @ pb)
            c.errors[(a, b)] = n * float(pa @ t @ pb)
    return c


def test_bounds_hold_for_arbitrary_yields():
    """s11^L <= s11 and e11^U >= e11 for random non-negative s_jk (notes 4.3-4.4, [D])."""
    rng = np.random.default_rng(3)
    p = link(finite=False)
    intens = {"mu_z": 0.5, "mu_y": 0.2, "mu_x": 0.05}
    for _ in range(100):
        s = rng.uniform(0, 1, size=(25, 25)) * 1e-3
        t = rng.uniform(0, 0.5, size=(25, 25)) * s
        t[0, :], t[:, 0] = s[0, :] / 2, s[:, 0] / 2   # a vacuum side gives random bits
        c = _counts_from_yields(s, t, intens)
        r = mdi_finite_key(c, p, intens, PROB)
        assert r.bounds["s11_lower"] <= s[1, 1] * (1 + 1e-9)
        assert r.bounds["s11_lower"] > 0.5 * s[1, 1]
        assert r.bounds["e11_upper"] >= t[1, 1] / s[1, 1] * (1 - 1e-9)


def test_fluctuating_counts_keep_s11_below_truth():
    rng = np.random.default_rng(5)
    p = link()
    expected = mdi_expected_counts(p, INT, PROB)
    s11 = true_s11(p.eta_arm, p.dark_total, p.misalignment_x)
    for _ in range(10):
        c = MDICounts(pulses=p.pulses, sent=dict(expected.sent))
        for key in expected.detected:
            err = rng.poisson(expected.errors[key])
            ok = rng.poisson(expected.detected[key] - expected.errors[key])
            c.errors[key], c.detected[key] = float(err), float(err + ok)
        r = mdi_finite_key(c, p, INT, PROB)
        assert r.bounds["s11_lower"] <= s11


def test_double_scanning_is_no_worse_than_worst_corner():
    """Scanning picks the worst grid point; a 1x1 'scan' at the corner is never better."""
    p = link()
    c = mdi_expected_counts(p, INT, PROB)
    scanned = mdi_finite_key(c, p, INT, PROB, scan=41)
    coarse = mdi_finite_key(c, p, INT, PROB, scan=2)
    assert scanned.key_bits <= coarse.key_bits
    assert scanned.bounds["scan_points"] == 41 * 41


def test_finite_rate_approaches_asymptotic():
    p = link()
    asym = mdi_rate(p.replace(finite=False)).key_rate_per_pulse
    rates = [mdi_rate(p.replace(pulses=n)).key_rate_per_pulse for n in (1e12, 1e13, 1e14,
                                                                        1e16)]
    assert asym > 0
    assert all(a < b for a, b in zip(rates[:-1], rates[1:], strict=True))
    assert rates[-1] <= asym
    assert rates[-1] == pytest.approx(asym, rel=2e-2)


def test_rate_scales_as_eta():
    """Noise-free, fixed settings: at long distance +20 km costs 10^(-alpha*20/10)."""
    p = link(dark_count_probability=0.0, finite=False)
    for km, tol in ((250, 3e-3), (400, 3e-4)):
        r0 = mdi_rate(p.replace(distance_km=km)).key_rate_per_pulse
        r1 = mdi_rate(p.replace(distance_km=km + 20)).key_rate_per_pulse
        assert r1 / r0 == pytest.approx(10 ** (-0.2 * 20 / 10), rel=tol)


def test_no_key_above_plob_and_when_forbidden():
    for km in (1, 20, 100, 200):
        p = link(distance_km=km, finite=False, detector_efficiency=1.0,
                 dark_count_probability=0.0, misalignment_error=0.0, misalignment_error_x=0.0)
        assert mdi_rate(p).key_rate_per_pulse <= plob(p.eta_channel)
    short = mdi_rate(link(pulses=1e9))
    assert short.key_bits == 0 and short.abort_reason
    far = mdi_rate(link(distance_km=300))
    assert far.key_bits == 0 and far.abort_reason
    bad = mdi_rate(link(misalignment_error=0.2, finite=False))
    assert bad.key_rate_per_pulse == 0.0 and "leakage" in bad.abort_reason


def test_s0_term_and_overrides():
    p = link(finite=False)
    c = mdi_expected_counts(p, INT, PROB)
    with_s0 = mdi_finite_key(c, p, INT, PROB)
    without = mdi_finite_key(c, p, INT, PROB, include_s0=False)
    assert with_s0.bounds["s0_lower"] > 0 and without.bounds["s0_lower"] == 0
    assert with_s0.key_rate_per_pulse > without.key_rate_per_pulse
    q = link()
    cq = mdi_expected_counts(q, INT, PROB)
    base = mdi_finite_key(cq, q, INT, PROB)
    leak = mdi_finite_key(cq, q, INT, PROB, leak_ec_bits=base.bounds["leak_ec_bits"] + 1e5)
    assert base.key_bits - leak.key_bits == pytest.approx(1e5, abs=2)
    assert base.epsilon_total == pytest.approx(base.ledger.count * 1e-10)
    # M, n_ox, n_oo (low and high: 6), two joint constraints of two terms (4), O^L of the zz
    # single-photon pairs, O^U of their phase errors, s0 (E^L and O^L): 14 bounds + 4 eps terms
    assert base.ledger.summary()["uses"] == {"E^L": 6, "E^U": 5, "O^L": 2, "O^U": 1,
                                             "composable": 4}
