"""SNS-TF-QKD engine: observables, decoy bounds, AOPP, finite key (combkey.keyrate.sns)."""
import math

import numpy as np
import pytest
from scipy.stats import poisson

from combkey.keyrate import LinkParams, plob, sns_expected_counts, sns_finite_key, sns_rate
from combkey.keyrate.sns import (
    SNS_CLASSES,
    SNSCounts,
    sns_class_probabilities,
    sns_click_probabilities,
    sns_true_yields,
)

INT = {"mu_z": 0.45, "mu_1": 0.1, "mu_2": 0.4}
PROB_AOPP = {"p_z": 0.8, "epsilon_send": 0.25, "p_1": 0.08, "p_2": 0.04}
PROB = {"p_z": 0.8, "epsilon_send": 0.05, "p_1": 0.08, "p_2": 0.04}
BASE = dict(distance_km=200.0, fiber_loss_db_per_km=0.2, detector_efficiency=0.5,
            dark_count_probability=1e-9, misalignment_error=0.05, pulses=1e12, clock_hz=1e9,
            intensities=INT, probabilities=PROB)


def link(**kw):
    return LinkParams.from_dict(dict(BASE, **kw), "sns")


def test_click_probabilities_physics():
    phi = np.linspace(-np.pi, np.pi, 101)
    d0, d1, both = sns_click_probabilities(0.01, 0.01, 0.3, 0.3, phi, 1e-7)
    none = 1 - d0 - d1 - both
    assert np.all(none > 0) and np.all(np.minimum.reduce([d0, d1, both]) >= 0)
    # constructive port D0 at dphi = 0, destructive D1 exactly dark without noise
    c0, c1, cb = sns_click_probabilities(0.01, 0.01, 0.3, 0.3, 0.0, 0.0)
    assert c1 == 0.0 and cb == 0.0 and c0 == pytest.approx(1 - math.exp(-0.006))
    # ports swap at dphi = pi
    s0, s1, _ = sns_click_probabilities(0.01, 0.01, 0.3, 0.3, np.pi, 0.0)
    assert s0 == pytest.approx(0.0, abs=1e-15) and s1 == pytest.approx(c0)
    # one arm vacuum: a 50/50 split of the other
    v0, v1, _ = sns_click_probabilities(0.02, 0.0, 0.5, 0.0, phi, 0.0)
    np.testing.assert_allclose(v0, v1)


def test_expected_counts_consistency():
    p = link()
    c = sns_expected_counts(p, INT, PROB)
    assert sum(c.sent.values()) == pytest.approx(p.pulses, rel=1e-12)
    assert sum(sns_class_probabilities(PROB).values()) == pytest.approx(1.0)
    assert set(c.sent) == {(a, b) for a in SNS_CLASSES for b in SNS_CLASSES}
    # the phase-averaged yield equals the average of the click probabilities over dphi
    eta, pd = p.eta_arm, p.dark_total
    phi = np.linspace(-np.pi, np.pi, 20001)[:-1]
    d0, d1, _ = sns_click_probabilities(eta, eta, INT["mu_z"], INT["mu_z"], phi, pd)
    yzz = c.detected[("zs", "zs")] / c.sent[("zs", "zs")]
    assert yzz == pytest.approx(np.mean(d0 + d1), rel=1e-9)
    # the Poisson mixture of the photon-number yields equals the one-sided yield
    s1, s = sns_true_yields(eta, pd, n_max=30)
    mu = INT["mu_2"]
    mix = sum(poisson.pmf(n, mu) * s[n] for n in range(31))
    assert c.detected[("x2", "x0")] / c.sent[("x2", "x0")] == pytest.approx(mix, rel=1e-10)
    assert s[1] == pytest.approx(s1, rel=1e-12)
    # Z-window bookkeeping
    assert c.z_bits == pytest.approx(c.z_bits0 + c.z_bits1)
    assert c.z_errors == pytest.approx(c.detected[("zn", "zn")] + c.detected[("zs", "zs")])
    assert c.x11_selected_sent == pytest.approx(0.1 * c.sent[("x1", "x1")])


def test_x_window_error_rate_tracks_misalignment():
    for ed in (0.0, 0.03, 0.1):
        p = link(misalignment_error=ed, dark_count_probability=0.0, x_postselect_fraction=1e-3)
        c = sns_expected_counts(p, INT, PROB)
        assert c.x11_selected_errors / c.x11_selected_detected == pytest.approx(ed, abs=2e-4)


@pytest.mark.parametrize("km", [50, 200, 400, 600, 800])
def test_decoy_bound_below_true_yield_asymptotic(km):
    p = link(distance_km=km, finite=False)
    r = sns_rate(p)
    s1, _ = sns_true_yields(p.eta_arm, p.dark_total)
    assert 0.9 * s1 < r.bounds["s1_lower"] <= s1


def test_decoy_bound_below_truth_for_arbitrary_yields():
    """s1^L <= s1 for any non-negative photon-number yields (asymptotic, [D] 2.3)."""
    rng = np.random.default_rng(7)
    p = link(finite=False)
    mu1, mu2 = INT["mu_1"], INT["mu_2"]
    for _ in range(200):
        s = rng.uniform(0, 1e-3, size=40) * rng.uniform(0, 1, size=40) ** 3
        n = np.arange(40)
        det = {k: float(np.dot(poisson.pmf(n, mu), s)) for k, mu in
               (("x0", 0.0), ("x1", mu1), ("x2", mu2))}
        c = SNSCounts(pulses=1.0)
        for k in ("x1", "x2"):
            c.sent[(k, "x0")] = c.sent[("x0", k)] = 1.0
            c.detected[(k, "x0")] = c.detected[("x0", k)] = det[k]
        c.sent[("x0", "x0")], c.detected[("x0", "x0")] = 1.0, det["x0"]
        r = sns_finite_key(c, p, INT, PROB, aopp=False)
        assert r.bounds["s1_lower"] <= s[1] * (1 + 1e-9) + 1e-18


def test_decoy_bound_below_truth_with_fluctuating_counts():
    """Poisson-sampled counts: finite-size s1^L and n1^L stay below the truth."""
    rng = np.random.default_rng(11)
    p = link(pulses=1e11, aopp=True, probabilities=PROB_AOPP)
    expected = sns_expected_counts(p, INT, PROB_AOPP)
    s1_true, _ = sns_true_yields(p.eta_arm, p.dark_total)
    for _ in range(20):
        c = SNSCounts(pulses=p.pulses, sent=dict(expected.sent))
        c.detected = {k: float(rng.poisson(v)) for k, v in expected.detected.items()}
        c.x11_selected_sent = expected.x11_selected_sent
        c.x11_selected_errors = float(rng.poisson(expected.x11_selected_errors))
        c.x11_selected_detected = float(rng.poisson(expected.x11_selected_detected))
        c.fill_z_from_pairs()
        r = sns_finite_key(c, p, INT, PROB_AOPP, aopp=True)
        assert r.bounds["s1_lower"] <= s1_true
        n1_true = (expected.sent[("zs", "zn")] + expected.sent[("zn", "zs")]) \
            * INT["mu_z"] * math.exp(-INT["mu_z"]) * s1_true
        assert r.bounds["n1_lower"] <= n1_true
        assert r.key_bits >= 0 and r.epsilon_total == pytest.approx(r.ledger.total_failure)


def test_phase_error_bound_covers_misalignment():
    for ed in (0.02, 0.08, 0.2):
        r = sns_rate(link(misalignment_error=ed, finite=False))
        assert r.bounds["e1_upper"] >= ed


@pytest.mark.parametrize("aopp, prob", [(False, PROB), (True, PROB_AOPP)])
def test_finite_rate_approaches_asymptotic(aopp, prob):
    p = link(aopp=aopp, probabilities=prob)
    asym = sns_rate(p.replace(finite=False)).key_rate_per_pulse
    rates = [sns_rate(p.replace(pulses=n)).key_rate_per_pulse for n in (1e11, 1e12, 1e13,
                                                                        1e14, 1e16)]
    assert asym > 0
    assert all(a < b for a, b in zip(rates[:-1], rates[1:], strict=True))
    assert rates[-1] <= asym
    assert rates[-1] == pytest.approx(asym, rel=5e-3)


@pytest.mark.parametrize("aopp, prob", [(False, PROB), (True, PROB_AOPP)])
def test_rate_scales_as_sqrt_eta(aopp, prob):
    """Noise-free, fixed settings: +20 km costs a factor 10^(-alpha*20/20), not /10."""
    p = link(aopp=aopp, probabilities=prob, dark_count_probability=0.0, finite=False)
    for km in (300, 500):
        r0 = sns_rate(p.replace(distance_km=km)).key_rate_per_pulse
        r1 = sns_rate(p.replace(distance_km=km + 20)).key_rate_per_pulse
        assert r1 / r0 == pytest.approx(10 ** (-0.2 * 20 / 20), rel=1e-3)


@pytest.mark.parametrize("aopp, prob", [(False, PROB), (True, PROB_AOPP)])
def test_no_key_above_single_repeater_bound(aopp, prob):
    """TF (one middle node) cannot beat the PLOB bound of each half: -log2(1-sqrt(eta))."""
    for km in (5, 50, 150, 300, 500):
        p = link(aopp=aopp, probabilities=prob, distance_km=km, finite=False,
                 detector_efficiency=1.0, dark_count_probability=0.0,
                 misalignment_error=0.0)
        r = sns_rate(p).key_rate_per_pulse
        assert r <= plob(math.sqrt(p.eta_channel))


def test_no_key_when_theory_forbids():
    few = sns_rate(link(pulses=1e6))
    assert few.key_bits == 0 and few.key_rate_per_pulse == 0.0
    assert "not positive" in few.abort_reason or "s1" in few.abort_reason
    noisy = sns_rate(link(distance_km=600, dark_count_probability=1e-4))
    assert noisy.key_bits == 0 and noisy.abort_reason
    # without AOPP, sending often makes the Z bit-error rate ~ epsilon_send: no key
    many = sns_rate(link(probabilities=PROB_AOPP, aopp=False))
    assert many.key_bits == 0 and "leakage" in many.abort_reason
    ok = sns_rate(link())
    assert ok.key_bits > 0 and ok.abort_reason is None


def test_aopp_bookkeeping_and_gain():
    p = link(probabilities=PROB_AOPP, aopp=True)
    r = sns_rate(p)
    b = r.bounds
    c = sns_expected_counts(p, INT, PROB_AOPP)
    assert b["aopp_pairs"] == pytest.approx(min(c.z_bits0, c.z_bits1))
    e0, e1 = c.z_errors0 / c.z_bits0, c.z_errors1 / c.z_bits1
    assert b["aopp_kept"] == pytest.approx(b["aopp_pairs"] * ((1 - e0) * (1 - e1) + e0 * e1))
    assert b["aopp_E"] < min(e0, e1) and b["aopp_E"] < 0.01
    assert b["aopp_n1_lower"] <= b["n1_lower"] / 2
    assert b["aopp_e1_upper"] >= 2 * b["e1_upper"] * (1 - b["e1_upper"])
    # observed pairing counts are used when given
    c.aopp_pairs, c.aopp_kept, c.aopp_errors = b["aopp_pairs"], b["aopp_kept"], 0.0
    r0 = sns_finite_key(c, p, INT, PROB_AOPP, aopp=True)
    assert r0.bounds["leak_ec_bits"] == 0.0 and r0.key_bits > r.key_bits
    # AOPP beats the plain protocol at long distance (both optimised over epsilon_send)
    far = dict(distance_km=450)
    plain = max(sns_rate(link(probabilities=dict(PROB, epsilon_send=e), **far))
                .key_rate_per_pulse for e in (0.02, 0.05, 0.1))
    aopp = max(sns_rate(link(probabilities=dict(PROB, epsilon_send=e), aopp=True, **far))
               .key_rate_per_pulse for e in (0.1, 0.2, 0.3))
    assert aopp > plain > 0


def test_leak_override_and_penalty_override():
    p = link()
    c = sns_expected_counts(p, INT, PROB)
    base = sns_finite_key(c, p, INT, PROB, aopp=False)
    more = sns_finite_key(c, p, INT, PROB, aopp=False,
                          leak_ec_bits=base.bounds["leak_ec_bits"] + 1e6)
    assert base.key_bits - more.key_bits == pytest.approx(1e6, abs=2)
    pen = sns_finite_key(c, p, INT, PROB, aopp=False, penalty_bits=0.0)
    assert pen.key_bits - base.key_bits == pytest.approx(base.bounds["penalty_bits"], abs=2)


def test_ledger_counts_every_bound():
    r = sns_rate(link(probabilities=PROB_AOPP, aopp=True))
    kinds = r.ledger.summary()["uses"]
    # E^L(S1), joint E^U (2), E^U(X errors), E^L(S00), O^L(n1), O^U(e1), O^L(pairs), O^U(pairs)
    assert kinds == {"E^L": 2, "E^U": 3, "O^L": 2, "O^U": 2, "composable": 3}
    assert r.epsilon_total == pytest.approx(12 * 1e-10)
    r2 = sns_rate(link(epsilon=1e-8))
    assert r2.epsilon_total == pytest.approx(10 * 1e-8)


def test_monte_carlo_of_click_probabilities_matches_expected_counts():
    """A small simulated block built from sns_click_probabilities (the simulator's path)
    agrees with sns_expected_counts within 5 standard deviations per class pair."""
    rng = np.random.default_rng(2)
    p = link(distance_km=20, dark_count_probability=1e-3, probabilities=PROB_AOPP)
    n = 400_000
    pc = sns_class_probabilities(PROB_AOPP)
    mus = {"zn": 0.0, "zs": INT["mu_z"], "x0": 0.0, "x1": INT["mu_1"], "x2": INT["mu_2"]}
    names = list(SNS_CLASSES)
    probs = [pc[k] for k in names]
    a = rng.choice(len(names), size=n, p=probs)
    b = rng.choice(len(names), size=n, p=probs)
    mu = np.array([mus[k] for k in names])
    dphi = rng.uniform(0, 2 * np.pi, size=n)
    d0, d1, both = sns_click_probabilities(p.eta_arm, p.eta_arm, mu[a], mu[b], dphi,
                                           p.dark_total)
    u = rng.uniform(size=n)
    effective = u < d0 + d1
    expected = sns_expected_counts(p.replace(pulses=n), INT, PROB_AOPP)
    for i, ka in enumerate(names):
        for j, kb in enumerate(names):
            sel = (a == i) & (b == j)
            exp = expected.detected[(ka, kb)] * sel.sum() / expected.sent[(ka, kb)]
            got = effective[sel].sum()
            assert abs(got - exp) <= 5 * math.sqrt(exp) + 1
