"""Chernoff closed forms, their coverage, joint constraints and the ledger."""
import math

import numpy as np
import pytest
from scipy.stats import poisson

from combkey.keyrate.chernoff import Ledger, e_lower, e_upper, o_lower, o_upper

XI = 1e-10


def test_closed_forms_match_notes_section7():
    # keyrate-notes.md section 7 (closed forms [C], values computed there), 4 decimals.
    assert float(e_lower(1000, XI)) == pytest.approx(773.5819, abs=1e-4)
    assert float(e_upper(1000, XI)) == pytest.approx(1238.8542, abs=1e-4)
    assert float(o_lower(1000, XI)) == pytest.approx(785.4034, abs=1e-4)
    assert float(o_upper(1000, XI)) == pytest.approx(1226.4181, abs=1e-4)
    assert float(e_lower(1e6, XI)) == pytest.approx(993202.3369, abs=1e-4)
    assert float(e_upper(1e6, XI)) == pytest.approx(1006809.2053, abs=1e-4)


def test_o_lower_inverts_e_upper():
    # [D]: inverting O^L gives exactly E^U.
    x = np.array([0.0, 1.0, 37.0, 1e4, 1e9])
    np.testing.assert_allclose(o_lower(e_upper(x, XI), XI), x, rtol=1e-9, atol=1e-6)


def test_vectorised_and_ordered():
    x = np.logspace(0, 12, 25)
    assert e_lower(x, XI).shape == x.shape
    assert np.all(e_lower(x, XI) <= x) and np.all(e_upper(x, XI) >= x)
    assert np.all(o_lower(x, XI) <= x) and np.all(o_upper(x, XI) >= x)
    assert float(e_lower(0.0, XI)) == 0.0 and float(o_lower(3.0, XI)) == 0.0


@pytest.mark.parametrize("xi", [1e-3, 1e-6])
@pytest.mark.parametrize("mean", [5.0, 80.0, 2000.0, 1e5])
def test_bounds_fail_with_probability_at_most_xi(mean, xi):
    """Exact Poisson tail probabilities of each bound failing are <= xi."""
    # observed from expected
    assert poisson.cdf(math.ceil(float(o_lower(mean, xi))) - 1, mean) <= xi
    assert poisson.sf(math.floor(float(o_upper(mean, xi))), mean) <= xi
    # expected from observed: failure = the observed count makes the bound miss the mean
    k = np.arange(0, int(mean + 40 * math.sqrt(mean) + 200))
    fail_hi = e_upper(k, xi) < mean
    fail_lo = e_lower(k, xi) > mean
    assert poisson.pmf(k[fail_hi], mean).sum() <= xi
    assert poisson.pmf(k[fail_lo], mean).sum() <= xi


def test_invalid_xi():
    with pytest.raises(ValueError, match="xi must be in"):
        e_lower(10, 0.0)


def test_ledger_records_every_use():
    led = Ledger(xi=1e-10)
    led.e_lower("a", 100.0)
    led.o_upper("b", np.array([1.0, 2.0]))
    led.add("eps_cor", 1e-9)
    assert led.count == 3
    assert led.total_failure == pytest.approx(2e-10 + 1e-9)
    assert led.summary()["uses"] == {"E^L": 1, "O^U": 1, "composable": 1}
    asym = Ledger(xi=1e-10, finite=False)
    assert asym.e_upper("x", 123.0) == 123.0 and asym.count == 0
    asym.add("eps_cor", 1e-9)
    assert asym.total_failure == 0.0


def test_joint_constraints_between_termwise_and_exact():
    rng = np.random.default_rng(1)
    for _ in range(20):
        a = rng.uniform(0, 3, size=3)
        n = rng.uniform(10, 1e5, size=3)
        led = Ledger(xi=XI)
        lo = led.joint_lower("s", a, n)
        hi = led.joint_upper("s", a, n)
        termwise_lo = sum(ai * float(e_lower(ni, XI)) for ai, ni in zip(a, n, strict=True))
        termwise_hi = sum(ai * float(e_upper(ni, XI)) for ai, ni in zip(a, n, strict=True))
        exact = float(np.dot(a, n))
        assert termwise_lo <= lo + 1e-9 <= exact + 1e-9
        assert exact <= hi <= termwise_hi + 1e-9
        assert led.count == 6
    with pytest.raises(ValueError, match="coefficients must be >= 0"):
        Ledger().joint_lower("s", [-1.0, 1.0], [1.0, 2.0])
