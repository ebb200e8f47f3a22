"""Sending-or-not-sending twin-field QKD (SNS-TF-QKD): observables, decoy bounds, AOPP, key.

References: Wang, Yu, Hu, "Twin-field quantum key distribution with large misalignment error",
PRA 98, 062323 (2018); Jiang, Yu, Hu, Wang, "Unconditional security of sending or not sending
twin-field QKD with finite pulses", PR Applied 12, 024061 (2019); Xu, Yu, Jiang, Hu, Wang,
"Sending-or-not-sending twin-field QKD: breaking the direct transmission key rate", PRA 101,
042330 (2020) (AOPP). Formulas follow ``keyrate-notes.md`` sections 2 and 3 (labels there).

Classes and counts
------------------
Each user, each window, is in one class (strings used everywhere, also by the simulator):

=======  ==============================================  =============================
class    meaning                                          probability (per user)
=======  ==============================================  =============================
``zn``   Z window, not sending (vacuum)                   ``p_z (1 - epsilon_send)``
``zs``   Z window, sending a coherent state ``mu_z``      ``p_z epsilon_send``
``x0``   X window, vacuum (``mu_0 = 0``)                  ``1 - p_z - p_1 - p_2``
``x1``   X window, ``mu_1``                               ``p_1``
``x2``   X window, ``mu_2``                               ``p_2``
=======  ==============================================  =============================

Bits (notes 2.1): Alice "send" = 1, Bob "send" = 0; so ``(zs, zn)`` and ``(zn, zs)`` are the
correct events and ``(zs, zs)`` / ``(zn, zn)`` the bit errors. Bob's group "0" (he sent) is
``(zn, zs) + (zs, zs)``; his group "1" is ``(zs, zn) + (zn, zn)``.

``SNSCounts`` (all counts per channel, floats allowed for expected values):

* ``pulses``: N, windows sent;
* ``sent[(a, b)]`` / ``detected[(a, b)]``: windows with Alice in class ``a`` and Bob in ``b``,
  and among them the effective events (exactly one of Charlie's two detectors clicked);
* ``x11_selected_sent`` / ``x11_selected_detected`` / ``x11_selected_errors``: ``(x1, x1)``
  windows whose phases pass the post-selection, their effective events, and the events in the
  detector that should stay dark for the announced phase relation;
* ``z_bits`` (``n_t``) and ``z_errors``: effective events of Z-Z windows and the bit errors
  among them (known after error correction);
* ``z_bits0`` / ``z_bits1``: ``n_t`` split by Bob's group (he sent / did not send), and
  ``z_errors0`` / ``z_errors1`` the errors in each group (``(zs,zs)`` and ``(zn,zn)`` events);
* AOPP, after pairing: ``aopp_pairs`` (``n_g``, pairs Bob formed), ``aopp_kept`` (``n_t'``,
  pairs whose parity Alice confirmed; one bit each is kept) and ``aopp_errors`` (bit errors
  among the kept bits, known after error correction). If these are ``None``
  :func:`sns_finite_key` uses their expected values from the group sizes and group errors
  (notes 2.6), which is what the expected-count rate and the optimiser do; a real session must
  fill them in.

Functions
---------
* ``sns_click_probabilities(eta_a, eta_b, mu_a, mu_b, dphi, p_dark)`` -> ``(p_only_d0,
  p_only_d1, p_both)``: coherent states ``sqrt(mu_a)`` and ``sqrt(mu_b) e^{i dphi}`` through arms
  ``eta_a``, ``eta_b`` onto a 50:50 beam splitter, threshold detectors with noise-click
  probability ``p_dark`` each. D0 is the constructive port at ``dphi = 0``. Vectorised over all
  arguments (numpy broadcasting). No misalignment is applied here.
* ``sns_expected_counts(params, intensities, probabilities) -> SNSCounts`` of expected values,
  misalignment ``e_d`` applied as an X-window flip probability (notes 2.2), the residual phase
  of post-selected X11 pairs uniform over ``[-Delta/2, Delta/2]`` with
  ``Delta = pi * x_postselect_fraction``.
* ``sns_finite_key(counts, params, intensities, probabilities, *, aopp, leak_ec_bits=None,
  eps=None, penalty_bits=None) -> KeyResult``. ``eps`` overrides ``params.epsilon`` as the
  failure probability of each bound; ``penalty_bits`` overrides
  :func:`combkey.keyrate.common.sns_penalty_bits`. With ``params.finite`` false every bound is
  the identity and no penalty is applied (asymptotic limit of the same estimator).
* ``sns_rate(params, intensities=None, probabilities=None, *, aopp=None) -> KeyResult``: the
  key of the expected counts (``params.intensities`` / ``probabilities`` when not given).
* ``sns_true_yields(eta, p_dark)``: ``s_1`` and the model's ``s_n`` (invariant tests).

Estimators (finite size, each bound recorded in the ledger)
-----------------------------------------------------------
``s1_lower``: notes 2.3 with ``S_1`` from ``(x1,x0)+(x0,x1)``, ``S_2`` from ``(x2,x0)+(x0,x2)``,
``S_0`` from ``(x0,x0)``; ``E^L`` on ``S_1`` and a joint ``E^U`` on the negatively weighted
``S_2`` and ``S_0``. ``e1_upper``: notes 2.3 from ``E^U`` of the X11 error count and ``E^L`` of
``(x0,x0)``, then converted to the untagged Z bits with ``O^U`` on the expected number of phase
errors (``n1_lower * e1``). ``n1_lower = O^L(sum over (zs,zn),(zn,zs) of sent * mu_z e^{-mu_z}
s1_lower)``. AOPP: untagged pairs ``O^L(n_g * (n1/2 / n_t1) * (n1/2 / n_t0))``, phase error of
their kept bit ``O^U(n1' * 2 e (1-e)) / n1'`` (notes 2.6; this finite-size treatment is our
construction from the notes' [R] items, the published zigzag bound may be tighter).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import i0e

from .chernoff import Ledger
from .common import finish, h2, sns_penalty_bits
from .params import ParamError, validate_intensities, validate_probabilities

__all__ = ["SNS_CLASSES", "SNSCounts", "sns_click_probabilities", "sns_expected_counts",
           "sns_finite_key", "sns_rate", "sns_true_yields", "sns_class_probabilities",
           "sns_class_intensities", "resolve_sns"]

SNS_CLASSES = ("zn", "zs", "x0", "x1", "x2")
Z_PAIRS = (("zn", "zn"), ("zn", "zs"), ("zs", "zn"), ("zs", "zs"))

# Gauss-Legendre nodes for averaging over the residual phase of selected X11 pairs.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(24)


@dataclass
class SNSCounts:
    """Counts of one SNS block (see the module docstring for every field)."""

    pulses: float
    sent: dict = field(default_factory=dict)
    detected: dict = field(default_factory=dict)
    x11_selected_sent: float = 0.0
    x11_selected_detected: float = 0.0
    x11_selected_errors: float = 0.0
    z_bits: float = 0.0
    z_errors: float = 0.0
    z_bits0: float = 0.0
    z_bits1: float = 0.0
    z_errors0: float = 0.0
    z_errors1: float = 0.0
    aopp_pairs: float | None = None
    aopp_kept: float | None = None
    aopp_errors: float | None = None

    def fill_z_from_pairs(self):
        """Set the ``z_*`` fields from ``detected`` of the Z-Z class pairs (errors included)."""
        d = self.detected
        self.z_bits0 = d.get(("zn", "zs"), 0) + d.get(("zs", "zs"), 0)
        self.z_bits1 = d.get(("zs", "zn"), 0) + d.get(("zn", "zn"), 0)
        self.z_errors0 = d.get(("zs", "zs"), 0)
        self.z_errors1 = d.get(("zn", "zn"), 0)
        self.z_bits = self.z_bits0 + self.z_bits1
        self.z_errors = self.z_errors0 + self.z_errors1
        return self


def sns_class_probabilities(probabilities):
    """Per-user class probabilities ``{class: p}`` from the SNS probability dict."""
    pz, e, p1, p2 = (probabilities[k] for k in ("p_z", "epsilon_send", "p_1", "p_2"))
    return {"zn": pz * (1 - e), "zs": pz * e, "x0": 1 - pz - p1 - p2, "x1": p1, "x2": p2}


def sns_class_intensities(intensities):
    """Per-class mean photon number ``{class: mu}`` from the SNS intensity dict."""
    return {"zn": 0.0, "zs": intensities["mu_z"], "x0": 0.0, "x1": intensities["mu_1"],
            "x2": intensities["mu_2"]}


def sns_click_probabilities(eta_a, eta_b, mu_a, mu_b, dphi, p_dark):
    """Return ``(only D0, only D1, both)`` click probabilities for relative phase ``dphi``."""
    ia = np.asarray(eta_a, dtype=float) * np.asarray(mu_a, dtype=float)
    ib = np.asarray(eta_b, dtype=float) * np.asarray(mu_b, dtype=float)
    cross = 2 * np.sqrt(ia * ib) * np.cos(dphi)
    i0 = np.maximum((ia + ib + cross) / 2, 0.0)
    i1 = np.maximum((ia + ib - cross) / 2, 0.0)
    q = 1.0 - np.asarray(p_dark, dtype=float)
    no0 = q * np.exp(-i0)
    no1 = q * np.exp(-i1)
    return (1 - no0) * no1, (1 - no1) * no0, (1 - no0) * (1 - no1)


def _effective_yield(eta, mu_a, mu_b, p_dark):
    """Exactly-one-click probability, both phases independent and uniform (notes 2.2)."""
    ia, ib = eta * mu_a, eta * mu_b
    q = 1 - p_dark
    # <e^{-I0}> = <e^{-I1}> = e^{-(ia+ib)/2} I_0(sqrt(ia ib)); i0e(z) = e^{-z} I_0(z).
    z = math.sqrt(ia * ib)
    avg = math.exp(-(ia + ib) / 2 + z) * float(i0e(z))
    return 2 * q * avg - 2 * q * q * math.exp(-(ia + ib))


def _selected_x11(eta, mu1, p_dark, e_d, fraction):
    """Return ``(yield, error yield)`` of post-selected X11 pairs (residual phase uniform)."""
    half = math.pi * fraction / 2
    phi = _GL_X * half
    w = _GL_W / 2
    p0, p1, _ = sns_click_probabilities(eta, eta, mu1, mu1, phi, p_dark)
    cor = float(np.sum(w * p0))
    err = float(np.sum(w * p1))
    return cor + err, e_d * cor + (1 - e_d) * err


def sns_true_yields(eta, p_dark, n_max=8):
    """Return ``(s_1, [s_0 .. s_n_max])`` of the exactly-one-click model (notes 2.2, [D])."""
    q = 1 - p_dark
    s = [2 * q * ((1 - eta / 2) ** n - q * (1 - eta) ** n) for n in range(n_max + 1)]
    return q * (eta + 2 * p_dark * (1 - eta)), s


def sns_expected_counts(params, intensities, probabilities):
    """Return the expected :class:`SNSCounts` of one block for ``params`` (symmetric link)."""
    intensities = validate_intensities(dict(intensities), "sns")
    probabilities = validate_probabilities(dict(probabilities), "sns")
    eta, pd, n = params.eta_arm, params.dark_total, params.pulses
    pc = sns_class_probabilities(probabilities)
    mc = sns_class_intensities(intensities)
    counts = SNSCounts(pulses=n)
    for a in SNS_CLASSES:
        for b in SNS_CLASSES:
            sent = n * pc[a] * pc[b]
            counts.sent[(a, b)] = sent
            counts.detected[(a, b)] = sent * _effective_yield(eta, mc[a], mc[b], pd)
    frac = params.x_postselect_fraction
    y, t = _selected_x11(eta, intensities["mu_1"], pd, params.misalignment_error, frac)
    counts.x11_selected_sent = counts.sent[("x1", "x1")] * frac
    counts.x11_selected_detected = counts.x11_selected_sent * y
    counts.x11_selected_errors = counts.x11_selected_sent * t
    return counts.fill_z_from_pairs()


def _aopp_expected(n_t0, n_t1, e0_count, e1_count):
    """Expected ``(n_g, n_t', errors')`` of AOPP from group sizes and group errors."""
    n_g = min(n_t0, n_t1)
    e0 = e0_count / n_t0 if n_t0 > 0 else 0.0
    e1 = e1_count / n_t1 if n_t1 > 0 else 0.0
    keep = (1 - e0) * (1 - e1) + e0 * e1
    return n_g, n_g * keep, n_g * e0 * e1


def sns_finite_key(counts, params, intensities, probabilities, *, aopp, leak_ec_bits=None,
                   eps=None, penalty_bits=None):
    """Return the :class:`KeyResult` of one SNS block (module docstring: estimators)."""
    intensities = validate_intensities(dict(intensities), "sns")
    mu_z, mu1, mu2 = (intensities[k] for k in ("mu_z", "mu_1", "mu_2"))
    xi = params.epsilon if eps is None else eps
    L = Ledger(xi=xi, finite=params.finite)
    sent, det = counts.sent, counts.detected

    def pair_sum(table, *pairs):
        return float(sum(table.get(p, 0) for p in pairs))

    N00 = pair_sum(sent, ("x0", "x0"))
    N10 = pair_sum(sent, ("x1", "x0"), ("x0", "x1"))
    N20 = pair_sum(sent, ("x2", "x0"), ("x0", "x2"))
    if min(N00, N10, N20) <= 0:
        return finish(0, counts.pulses, L, {}, "no X windows with one side vacuum were sent")
    n00 = pair_sum(det, ("x0", "x0"))
    n10 = pair_sum(det, ("x1", "x0"), ("x0", "x1"))
    n20 = pair_sum(det, ("x2", "x0"), ("x0", "x2"))

    # s1 lower bound (notes 2.3): positive S_1, negative S_2 and S_0 (joint upper bound).
    s1_term = mu2 ** 2 * math.exp(mu1) * L.e_lower("n(x1,x0)+n(x0,x1)", n10) / N10
    neg = L.joint_upper("mu1^2 e^mu2 S_2 + (mu2^2-mu1^2) S_0",
                        [mu1 ** 2 * math.exp(mu2) / N20, (mu2 ** 2 - mu1 ** 2) / N00],
                        [n20, n00])
    s1_lower = max(0.0, (s1_term - neg) / (mu1 * mu2 * (mu2 - mu1)))
    bounds = {"s1_lower": s1_lower}
    if s1_lower <= 0:
        bounds["e1_upper"] = 0.5
        return finish(0, counts.pulses, L, bounds,
                      "single-photon yield lower bound s1 is 0 (too few decoy counts)")

    # phase-flip error of untagged bits (notes 2.3).
    if counts.x11_selected_sent <= 0:
        return finish(0, counts.pulses, L, bounds, "no post-selected X11 windows")
    t_x = L.e_upper("errors(x1,x1 selected)", counts.x11_selected_errors) \
        / counts.x11_selected_sent
    s00 = L.e_lower("n(x0,x0) for e1", n00) / N00
    e1 = (t_x - math.exp(-2 * mu1) * s00 / 2) / (2 * mu1 * math.exp(-2 * mu1) * s1_lower)
    e1 = min(max(e1, 0.0), 0.5)

    # untagged Z bits.
    y1 = mu_z * math.exp(-mu_z) * s1_lower
    n1_exp = (pair_sum(sent, ("zs", "zn")) + pair_sum(sent, ("zn", "zs"))) * y1
    n1 = L.o_lower("n1 untagged Z bits", n1_exp)
    if n1 <= 0:
        bounds.update(e1_upper=e1, n1_lower=0.0)
        return finish(0, counts.pulses, L, bounds, "no untagged bits are guaranteed")
    e1_z = min(0.5, L.o_upper("phase errors of untagged bits", n1 * e1) / n1)
    bounds.update(e1_upper=e1_z, e1_upper_x=e1, n1_lower=n1, n_t=counts.z_bits,
                  E_z=counts.z_errors / counts.z_bits if counts.z_bits else 0.0,
                  E_x11=(counts.x11_selected_errors / counts.x11_selected_detected
                         if counts.x11_selected_detected else 0.0))

    eps_cor, eps_pa, eps_hat = params.eps_terms
    if eps is not None:
        eps_cor = eps_pa = eps_hat = eps
    L.add("eps_cor", eps_cor)
    L.add("eps_pa", eps_pa)
    L.add("eps_hat", eps_hat)
    if not params.finite:
        penalty = 0.0
    elif penalty_bits is not None:
        penalty = float(penalty_bits)
    else:
        penalty = sns_penalty_bits(eps_cor, eps_pa, eps_hat)
    f = params.ec_efficiency

    if not aopp:
        leak = f * counts.z_bits * h2(bounds["E_z"]) if leak_ec_bits is None else leak_ec_bits
        length = n1 * (1 - h2(e1_z)) - leak - penalty
        bounds.update(leak_ec_bits=leak, penalty_bits=penalty)
        reason = "phase-error upper bound reached 1/2" if e1_z >= 0.5 else None
        return finish(length, counts.pulses, L, bounds, reason)

    # AOPP (notes 2.6).
    n_t0, n_t1 = counts.z_bits0, counts.z_bits1
    if n_t0 <= 0 or n_t1 <= 0:
        return finish(0, counts.pulses, L, bounds, "AOPP needs bits in both of Bob's groups")
    if counts.aopp_pairs is None:
        n_g, kept, errs = _aopp_expected(n_t0, n_t1, counts.z_errors0, counts.z_errors1)
    else:
        n_g, kept, errs = counts.aopp_pairs, counts.aopp_kept, counts.aopp_errors
        if kept is None or errs is None:
            raise ParamError("aopp_kept and aopp_errors must be given with aopp_pairs")
    e_aopp = errs / kept if kept > 0 else 0.0
    # untagged bits of each group (symmetric: half of n1 in each), then untagged pairs.
    n1_g1 = n1_g0 = n1 / 2
    n1p = L.o_lower("untagged AOPP pairs", n_g * (n1_g1 / n_t1) * (n1_g0 / n_t0))
    if n1p <= 0:
        bounds.update(aopp_pairs=n_g, aopp_kept=kept, aopp_E=e_aopp, aopp_n1_lower=0.0)
        return finish(0, counts.pulses, L, bounds, "no untagged pairs after AOPP")
    e1p = min(0.5, L.o_upper("phase errors of untagged pairs", n1p * 2 * e1_z * (1 - e1_z))
              / n1p)
    leak = f * kept * h2(e_aopp) if leak_ec_bits is None else leak_ec_bits
    length = n1p * (1 - h2(e1p)) - leak - penalty
    bounds.update(aopp_pairs=n_g, aopp_kept=kept, aopp_E=e_aopp, aopp_n1_lower=n1p,
                  aopp_e1_upper=e1p, leak_ec_bits=leak, penalty_bits=penalty)
    reason = "phase-error upper bound after AOPP reached 1/2" if e1p >= 0.5 else None
    return finish(length, counts.pulses, L, bounds, reason)


def resolve_sns(params, intensities=None, probabilities=None):
    """Return the ``(intensities, probabilities)`` to use, or raise :class:`ParamError`."""
    intensities = intensities if intensities is not None else params.intensities
    probabilities = probabilities if probabilities is not None else params.probabilities
    if intensities is None:
        raise ParamError("intensities is required unless the parameters are optimised")
    if probabilities is None:
        raise ParamError("probabilities is required unless the parameters are optimised")
    return dict(intensities), dict(probabilities)


def sns_rate(params, intensities=None, probabilities=None, *, aopp=None):
    """Return the :class:`KeyResult` of the expected counts of ``params`` (one channel)."""
    intensities, probabilities = resolve_sns(params, intensities, probabilities)
    counts = sns_expected_counts(params, intensities, probabilities)
    use_aopp = params.aopp if aopp is None else aopp
    return sns_finite_key(counts, params, intensities, probabilities, aopp=use_aopp)
