"""Four-intensity decoy MDI-QKD: observables, double-scanning finite-key analysis.

References: Zhou, Yu, Wang, "Making the decoy-state measurement-device-independent quantum key
distribution practically useful", PRA 93, 042324 (2016) (four-intensity protocol, joint
constraints); Jiang, Yu, Hu, Wang, "Higher key rate of measurement-device-independent quantum key
distribution through joint data processing", PRA 103, 012402 (2021) (double scanning); Xu,
Curty, Qi, Lo, NJP 15, 113007 (2013) (gain model). Formulas follow ``keyrate-notes.md``
section 4 (labels there).

Classes and counts
------------------
Each user, each pulse, is in class ``"o"`` (vacuum), ``"x"`` (``mu_x``, X basis), ``"y"``
(``mu_y``, X basis) or ``"z"`` (``mu_z``, Z basis), with probabilities ``p_o, p_x, p_y, p_z``.

``MDICounts``: ``pulses`` (N); ``sent[(a, b)]``, ``detected[(a, b)]`` (successful Bell-state
measurements announced by Charlie) and ``errors[(a, b)]`` (bit errors after sifting, for pairs
of the same basis: ``(x,x)``, ``(y,y)``, ``(x,y)``, ``(y,x)``, ``(z,z)``; pairs involving ``o``
or mixing bases carry no meaningful error count) for every class pair; properties ``zz_bits``,
``zz_errors``, ``xx_errors``.

Functions
---------
* ``mdi_gains(eta_a, eta_b, ka, kb, p_dark, e_d, basis)`` -> ``(Q, E*Q)``: gain and error gain of
  a class pair (notes 4.2; ``basis`` ``"Z"`` or ``"X"``). Vectorised.
* ``mdi_expected_counts(params, intensities, probabilities) -> MDICounts`` of expected values
  (symmetric link). Pairs with one user in ``z`` and the other in ``o`` use the Z-basis gain;
  mismatched-basis pairs (``z`` with ``x``/``y``) use the X-basis gain as an approximation
  (they are never used by the key length).
* ``mdi_finite_key(counts, params, intensities, probabilities, *, leak_ec_bits=None, eps=None,
  penalty_bits=None, include_s0=True, scan=41) -> KeyResult``: double scanning (notes 4.5).
  The ``(x,x)`` error expectation ``M`` is scanned over ``[E^L(m_xx), E^U(m_xx)]`` and the
  vacuum combination ``H = e^{mu_x}(S_xo + S_ox) - S_oo`` over its bound interval on a
  ``scan x scan`` grid; at each point ``s11^L`` (with ``<n_xx> = E^L(correct) + M``) and
  ``e11^U = (M/N_xx - e^{-2 mu_x} H/2) / (mu_x^2 e^{-2 mu_x} s11^L)`` are evaluated and the
  smallest key over the grid is returned. Reported: ``s11_lower`` / ``e11_upper``, the
  worst values over the scan region (valid bounds on their own), and ``s11_at_key`` /
  ``e11_at_key`` / ``sz11_lower`` / ``phi11_upper`` at the grid point that fixed the key (these
  are not separately valid bounds: only the key is). ``S~_yy`` is bounded
  above by a joint constraint on ``(n_yy, n_oo)``; the positive ``(correct xx, n_oy + n_yo)``
  terms below by another. Z basis:
  ``sz11 = O^L(N_zz mu_z^2 e^{-2 mu_z} s11^L)``, ``phi = O^U(sz11 e11) / sz11`` ([C]).
  ``include_s0`` (default true, as in the public double-scanning reproduction [C]) adds the
  vacuum term ``s_0^z = O^L(e^{-mu_z} (N_zz / N_oz) E^L(n_oz))`` with ``(o, z)`` = Alice vacuum,
  Bob ``z``; pass false for the variant without it.
* ``mdi_rate(params, intensities=None, probabilities=None, *, scan=41) -> KeyResult``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import i0e

from .chernoff import Ledger
from .common import finish, h2, mdi_penalty_bits
from .params import ParamError, validate_intensities, validate_probabilities

__all__ = ["MDI_CLASSES", "MDICounts", "mdi_gains", "mdi_expected_counts", "mdi_finite_key",
           "mdi_rate", "mdi_class_probabilities", "mdi_class_intensities", "resolve_mdi"]

MDI_CLASSES = ("o", "x", "y", "z")
_BASIS = {"o": None, "x": "X", "y": "X", "z": "Z"}


@dataclass
class MDICounts:
    """Counts of one four-intensity MDI block (see the module docstring)."""

    pulses: float
    sent: dict = field(default_factory=dict)
    detected: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)

    @property
    def zz_bits(self):
        """Sifted Z-basis bits (successful BSMs with both users in ``z``)."""
        return self.detected.get(("z", "z"), 0)

    @property
    def zz_errors(self):
        """Bit errors among :attr:`zz_bits`."""
        return self.errors.get(("z", "z"), 0)

    @property
    def xx_errors(self):
        """Bit errors among the ``(x, x)`` successful BSMs."""
        return self.errors.get(("x", "x"), 0)


def mdi_class_probabilities(probabilities):
    """Per-user class probabilities ``{class: p}``."""
    return {"o": probabilities["p_o"], "x": probabilities["p_x"], "y": probabilities["p_y"],
            "z": probabilities["p_z"]}


def mdi_class_intensities(intensities):
    """Per-class mean photon number ``{class: mu}``."""
    return {"o": 0.0, "x": intensities["mu_x"], "y": intensities["mu_y"],
            "z": intensities["mu_z"]}


def _i0(z):
    z = np.asarray(z, dtype=float)
    return i0e(z) * np.exp(z)


def _i0m1(z):
    """``I_0(z) - 1`` without cancellation at small ``z`` (power series below 0.5)."""
    z = np.asarray(z, dtype=float)
    u = (z / 2) ** 2
    series = np.zeros_like(u)
    term = np.ones_like(u)
    for k in range(1, 12):
        term = term * u / (k * k)
        series = series + term
    return np.where(z < 0.5, series, _i0(z) - 1)


def mdi_gains(eta_a, eta_b, ka, kb, p_dark, e_d, basis):
    """Return ``(Q, EQ)``, gain and error gain of a class pair (notes 4.2)."""
    ea = np.asarray(eta_a, dtype=float) * np.asarray(ka, dtype=float)
    eb = np.asarray(eta_b, dtype=float) * np.asarray(kb, dtype=float)
    q = 1.0 - np.asarray(p_dark, dtype=float)
    mu = ea + eb
    x = np.sqrt(ea * eb) / 2
    if basis == "Z":
        lq = np.log(q)
        qc = 2 * q * q * np.exp(-mu / 2) * np.expm1(lq - ea / 2) * np.expm1(lq - eb / 2)
        qe = 2 * (1 - q) * q * q * np.exp(-mu / 2) * (_i0(2 * x) - q * np.exp(-mu / 2))
        return qc + qe, e_d * qc + (1 - e_d) * qe
    if basis == "X":
        # 1 + 2y^2 - 4y I0(x) + I0(2x) rewritten as 2(1-y)^2 - 4y (I0(x)-1) + (I0(2x)-1) so
        # that low-loss and high-loss limits keep full relative precision.
        y = q * np.exp(-mu / 4)
        one_minus_y = -np.expm1(np.log(q) - mu / 4)
        d1, d2 = _i0m1(x), _i0m1(2 * x)
        gain = 2 * y * y * (2 * one_minus_y ** 2 - 4 * y * d1 + d2)
        err = gain / 2 - (1 - 2 * e_d) * y * y * d2
        return gain, err
    raise ValueError(f"basis must be 'Z' or 'X', not {basis!r}")


def mdi_expected_counts(params, intensities, probabilities):
    """Return the expected :class:`MDICounts` of one block for ``params`` (symmetric link)."""
    intensities = validate_intensities(dict(intensities), "mdi")
    probabilities = validate_probabilities(dict(probabilities), "mdi")
    eta, pd, n, ed = params.eta_arm, params.dark_total, params.pulses, params.misalignment_error
    pc = mdi_class_probabilities(probabilities)
    mc = mdi_class_intensities(intensities)
    counts = MDICounts(pulses=n)
    pairs = [(a, b) for a in MDI_CLASSES for b in MDI_CLASSES]
    ka = np.array([mc[a] for a, _ in pairs])
    kb = np.array([mc[b] for _, b in pairs])
    z_basis = np.array([{_BASIS[a], _BASIS[b]} - {None} == {"Z"} for a, b in pairs])
    gz, ez = mdi_gains(eta, eta, ka, kb, pd, ed, "Z")
    gx, ex = mdi_gains(eta, eta, ka, kb, pd, params.misalignment_x, "X")
    gain, err = np.where(z_basis, gz, gx), np.where(z_basis, ez, ex)
    for k, (a, b) in enumerate(pairs):
        sent = n * pc[a] * pc[b]
        counts.sent[(a, b)] = sent
        counts.detected[(a, b)] = sent * float(gain[k])
        counts.errors[(a, b)] = sent * float(err[k])
    return counts


def mdi_finite_key(counts, params, intensities, probabilities, *, leak_ec_bits=None, eps=None,
                   penalty_bits=None, include_s0=True, scan=41):
    """Return the :class:`KeyResult` of one MDI block by double scanning (module docstring)."""
    intensities = validate_intensities(dict(intensities), "mdi")
    mz, my, mx = (intensities[k] for k in ("mu_z", "mu_y", "mu_x"))
    xi = params.epsilon if eps is None else eps
    L = Ledger(xi=xi, finite=params.finite)
    sent, det, err = counts.sent, counts.detected, counts.errors

    def tot(table, *pairs):
        return float(sum(table.get(p, 0) for p in pairs))

    Nxx, Nyy, Noo = tot(sent, ("x", "x")), tot(sent, ("y", "y")), tot(sent, ("o", "o"))
    Nox, Noy = tot(sent, ("o", "x"), ("x", "o")), tot(sent, ("o", "y"), ("y", "o"))
    Nzz = tot(sent, ("z", "z"))
    if min(Nxx, Nyy, Noo, Nox, Noy, Nzz) <= 0:
        return finish(0, counts.pulses, L, {}, "a class pair needed by the decoy analysis "
                      "was never sent")
    nxx, mxx = tot(det, ("x", "x")), tot(err, ("x", "x"))
    nyy, noo = tot(det, ("y", "y")), tot(det, ("o", "o"))
    nox, noy = tot(det, ("o", "x"), ("x", "o")), tot(det, ("o", "y"), ("y", "o"))

    # Bounds used by the scan (each recorded once). Notation of notes 4.3-4.5, pooled over
    # the two orders of each asymmetric pair (symmetric intensities).
    m_lo, m_hi = L.e_lower("errors(x,x) low", mxx), L.e_upper("errors(x,x) high", mxx)
    ox_lo, ox_hi = L.e_lower("n(o,x)+n(x,o) low", nox), L.e_upper("n(o,x)+n(x,o) high", nox)
    oo_lo, oo_hi = L.e_lower("n(o,o) low", noo), L.e_upper("n(o,o) high", noo)
    # H = e^{mu_x} (S_xo + S_ox) - S_oo; N_ox counts both orders, so S_xo + S_ox = 2 n / N_ox.
    h_lo = 2 * math.exp(mx) * ox_lo / Nox - oo_hi / Noo
    h_hi = 2 * math.exp(mx) * ox_hi / Nox - oo_lo / Noo
    # s11 numerator times (mu_x^2 mu_y^2 (mu_y - mu_x)):
    #   my^3 e^{2mx} [<n_xx>/N_xx - e^{-2mx} H] - mx^3 e^{2my} [S_yy - e^{-my}(S_oy+S_yo)
    #   + e^{-2my} S_oo], with <n_xx> = <correct> + M. Positive terms jointly bounded below,
    #   negative terms jointly bounded above (as the double-scanning reproduction does, [C]).
    a_c = my ** 3 * math.exp(2 * mx) / Nxx
    pos = L.joint_lower("correct(x,x) and n(o,y)+n(y,o)",
                        [a_c, mx ** 3 * math.exp(2 * my) * 2 * math.exp(-my) / Noy],
                        [nxx - mxx, noy])
    neg = L.joint_upper("n(y,y) and n(o,o)",
                        [mx ** 3 * math.exp(2 * my) / Nyy, mx ** 3 / Noo], [nyy, noo])
    if params.finite:
        grid = np.linspace(0.0, 1.0, scan)
        M = (m_lo + (m_hi - m_lo) * grid)[:, None]
        H = (h_lo + (h_hi - h_lo) * grid)[None, :]
    else:
        M = np.array([[mxx]])
        H = np.array([[2 * math.exp(mx) * nox / Nox - noo / Noo]])
    num = pos - neg + a_c * M - my ** 3 * H
    s11 = np.maximum(num / (mx ** 2 * my ** 2 * (my - mx)), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        e11 = (M / Nxx - math.exp(-2 * mx) * H / 2) / (mx ** 2 * math.exp(-2 * mx) * s11)
    e11 = np.where(s11 > 0, np.clip(e11, 0.0, 0.5), 0.5)
    sz_exp = Nzz * mz ** 2 * math.exp(-2 * mz) * s11
    sz = L.o_lower("zz single-photon pairs", sz_exp)
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(sz > 0, L.o_upper("zz phase errors", sz * e11) / np.maximum(sz, 1e-300),
                       0.5)
    phi = np.clip(phi, 0.0, 0.5)
    secret = sz * (1 - h2(phi))
    s0 = 0.0
    if include_s0:
        Noz, noz = tot(sent, ("o", "z")), tot(det, ("o", "z"))
        s0 = L.o_lower("s0 z", math.exp(-mz) * Nzz / Noz * L.e_lower("n(o,z)", noz))
    n_zz, e_zz_cnt = float(counts.zz_bits), float(counts.zz_errors)
    E_zz = e_zz_cnt / n_zz if n_zz > 0 else 0.0
    f = params.ec_efficiency
    leak = f * n_zz * h2(E_zz) if leak_ec_bits is None else float(leak_ec_bits)
    eps_cor, eps_pa, eps_hat = params.eps_terms
    if eps is not None:
        eps_cor = eps_pa = eps_hat = eps
    eps_prime = eps_hat
    for label, value in (("eps_cor", eps_cor), ("eps_prime", eps_prime),
                         ("eps_hat", eps_hat), ("eps_pa", eps_pa)):
        L.add(label, value)
    if not params.finite:
        penalty = 0.0
    elif penalty_bits is not None:
        penalty = float(penalty_bits)
    else:
        penalty = mdi_penalty_bits(eps_cor, eps_prime, eps_hat, eps_pa)
    length = s0 + secret - leak - penalty
    k = np.unravel_index(np.argmin(length), length.shape)
    shape = length.shape
    bounds = {
        # Valid one-sided bounds over the whole scan region (each holds on its own) ...
        "s11_lower": float(np.min(np.broadcast_to(s11, shape))),
        "e11_upper": float(np.max(np.broadcast_to(e11, shape))),
        # ... and the values at the scan point that fixed the key (double scanning).
        "s11_at_key": float(np.broadcast_to(s11, shape)[k]),
        "e11_at_key": float(np.broadcast_to(e11, shape)[k]),
        "sz11_lower": float(np.broadcast_to(sz, shape)[k]),
        "phi11_upper": float(np.broadcast_to(phi, shape)[k]),
        "s0_lower": float(s0), "n_zz": n_zz, "E_zz": E_zz,
        "E_xx": mxx / nxx if nxx > 0 else 0.0,
        "leak_ec_bits": leak, "penalty_bits": penalty,
        "scan_points": int(length.size),
    }
    reason = None
    if bounds["s11_at_key"] <= 0:
        reason = "single-photon-pair yield lower bound s11 is 0 (too few decoy counts)"
    elif bounds["phi11_upper"] >= 0.5:
        reason = "phase-error upper bound reached 1/2"
    return finish(float(length[k]), counts.pulses, L, bounds, reason)


def resolve_mdi(params, intensities=None, probabilities=None):
    """Return the ``(intensities, probabilities)`` to use, or raise :class:`ParamError`."""
    intensities = intensities if intensities is not None else params.intensities
    probabilities = probabilities if probabilities is not None else params.probabilities
    if intensities is None:
        raise ParamError("intensities is required unless the parameters are optimised")
    if probabilities is None:
        raise ParamError("probabilities is required unless the parameters are optimised")
    return dict(intensities), dict(probabilities)


def mdi_rate(params, intensities=None, probabilities=None, *, scan=41):
    """Return the :class:`KeyResult` of the expected counts of ``params`` (one channel)."""
    intensities, probabilities = resolve_mdi(params, intensities, probabilities)
    counts = mdi_expected_counts(params, intensities, probabilities)
    return mdi_finite_key(counts, params, intensities, probabilities, scan=scan)
