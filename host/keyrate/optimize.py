"""Optimise intensities and probabilities of one link (scipy differential evolution + polish).

Interface
---------
``optimize(params, protocol=None, *, seed=0, maxiter=None) -> OptimResult`` maximises the
expected-count key rate of ``params`` (finite or asymptotic per ``params.finite``, with or
without AOPP per ``params.aopp``) over:

* SNS: ``mu_z`` in [0.01, 1], ``mu_1`` in [0.001, 0.5], ``mu_2`` in ``(mu_1, mu_1 + 0.8]``,
  ``p_z`` in [0.05, 0.99], ``epsilon_send`` in [0.01, 0.6], ``p_1`` and ``p_2`` as fractions
  of the remaining X-window probability (the vacuum X window keeps at least 2 %);
* MDI: ``mu_z`` in [0.01, 1.5], ``mu_y`` in [0.002, 0.8], ``mu_x`` in ``(0, mu_y)``, ``p_z`` in
  [0.05, 0.97] and ``p_o, p_x, p_y`` as a split of ``1 - p_z`` (each >= 0.2 % of it).

The objective is ``-log10(rate)`` where the key is positive; elsewhere a bounded surrogate that
still points toward positive key length. Search: structured starting points (and the
parameters' own intensities/probabilities when present) are evaluated, the best two are
polished by Nelder-Mead in the unit box; when no start gives a key, differential evolution
searches the whole box first. ``maxiter`` scales the search effort (default 10). MDI searches
with a 9 x 9 double scan and reports the optimum with the full 41 x 41 scan.
``OptimResult`` has ``intensities``, ``probabilities``, ``result`` (:class:`KeyResult` at the
optimum), ``evaluations`` and ``seconds``. Deterministic for a given ``seed``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import differential_evolution, minimize

from .common import KeyResult
from .params import ParamError

__all__ = ["optimize", "OptimResult", "decode"]


@dataclass
class OptimResult:
    """Outcome of :func:`optimize`."""

    intensities: dict
    probabilities: dict
    result: KeyResult
    evaluations: int
    seconds: float


def decode(t, protocol):
    """Map a point ``t`` of the unit box to ``(intensities, probabilities)``."""
    t = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
    if protocol == "sns":
        mu_z = 0.01 + 0.99 * t[0]
        mu_1 = 0.001 + 0.499 * t[1]
        mu_2 = mu_1 + 0.002 + 0.8 * t[2]
        p_z = 0.05 + 0.94 * t[3]
        eps = 0.01 + 0.59 * t[4]
        rest = (1 - p_z) * 0.98
        p_1 = max(rest * t[5], 1e-6)
        p_2 = max((rest - p_1) * t[6], 1e-6)
        return ({"mu_z": mu_z, "mu_1": mu_1, "mu_2": mu_2},
                {"p_z": p_z, "epsilon_send": eps, "p_1": p_1, "p_2": p_2})
    if protocol == "mdi":
        mu_z = 0.01 + 1.49 * t[0]
        mu_y = 0.002 + 0.798 * t[1]
        mu_x = mu_y * (0.02 + 0.96 * t[2])
        p_z = 0.05 + 0.92 * t[3]
        w = np.array([0.002 + t[4], 0.002 + t[5], 0.002 + t[6]])
        po, px, py = (1 - p_z) * w / w.sum()
        return ({"mu_z": mu_z, "mu_y": mu_y, "mu_x": mu_x},
                {"p_z": p_z, "p_y": py, "p_x": px, "p_o": po})
    raise ParamError(f"protocol must be 'sns' or 'mdi', not {protocol!r}")


def _encode_guess(protocol, intensities, probabilities):
    """Inverse of :func:`decode` for a starting point (clipped into the box)."""
    if protocol == "sns":
        i, p = intensities, probabilities
        rest = (1 - p["p_z"]) * 0.98
        t = [(i["mu_z"] - 0.01) / 0.99, (i["mu_1"] - 0.001) / 0.499,
             (i["mu_2"] - i["mu_1"] - 0.002) / 0.8, (p["p_z"] - 0.05) / 0.94,
             (p["epsilon_send"] - 0.01) / 0.59, p["p_1"] / rest, p["p_2"] / (rest - p["p_1"])]
    else:
        i, p = intensities, probabilities
        r = 1 - p["p_z"]
        t = [(i["mu_z"] - 0.01) / 1.49, (i["mu_y"] - 0.002) / 0.798,
             (i["mu_x"] / i["mu_y"] - 0.02) / 0.96, (p["p_z"] - 0.05) / 0.92,
             p["p_o"] / r, p["p_x"] / r, p["p_y"] / r]
    return np.clip(np.asarray(t, dtype=float), 0.0, 1.0)


def _starts(protocol):
    """Structured starting points (typical optima from short to long distance)."""
    if protocol == "sns":
        out = []
        for eps in (0.05, 0.15, 0.3):
            for p_z, mu_1 in ((0.7, 0.1), (0.9, 0.05)):
                out.append(({"mu_z": 0.45, "mu_1": mu_1, "mu_2": 0.4},
                            {"p_z": p_z, "epsilon_send": eps, "p_1": (1 - p_z) * 0.5,
                             "p_2": (1 - p_z) * 0.25}))
        return out
    out = []
    for mu_z, p_z in ((0.25, 0.5), (0.3, 0.6), (0.5, 0.75), (0.6, 0.85)):
        for mu_x in (0.03, 0.06):
            r = 1 - p_z
            out.append(({"mu_z": mu_z, "mu_y": 0.2, "mu_x": mu_x},
                        {"p_z": p_z, "p_y": 0.2 * r, "p_x": 0.7 * r, "p_o": 0.1 * r}))
    return out


def _key_fn(protocol, search=False):
    if protocol == "sns":
        from .sns import sns_rate
        return sns_rate
    from .mdi import mdi_rate
    if search:
        # A coarse double scan while searching; the returned result uses the full scan.
        return lambda p, i, q: mdi_rate(p, i, q, scan=9)
    return mdi_rate


def optimize(params, protocol=None, *, seed=0, maxiter=None):
    """Maximise the key rate of ``params`` over intensities and probabilities."""
    protocol = protocol or params.protocol
    if protocol not in ("sns", "mdi"):
        raise ParamError(f"protocol must be 'sns' or 'mdi', not {protocol!r}")
    fn = _key_fn(protocol, search=True)
    evals = [0]

    def objective(t):
        evals[0] += 1
        i, p = decode(t, protocol)
        r = fn(params, i, p)
        if r.key_rate_per_pulse > 0:
            return -math.log10(r.key_rate_per_pulse)
        raw = r.bounds.get("key_length_raw", 0.0)
        scale = abs(r.bounds.get("leak_ec_bits", 0.0)) + abs(r.bounds.get("penalty_bits", 0.0))
        return 40.0 + min(1.0, max(0.0, -raw) / (scale + 1.0)) - 1e-3 * r.bounds.get(
            "s1_lower", r.bounds.get("s11_lower", 0.0))

    t0 = time.perf_counter()
    starts = _starts(protocol)
    if params.intensities is not None and params.probabilities is not None:
        starts.insert(0, (params.intensities, params.probabilities))
    xs = [_encode_guess(protocol, i, p) for i, p in starts]
    fs = [objective(x) for x in xs]
    order = sorted(range(len(xs)), key=lambda k: fs[k])
    xbest, fbest = xs[order[0]], fs[order[0]]
    if fbest >= 40.0:
        # No start has a key: search the whole box before polishing.
        de = differential_evolution(objective, [(0.0, 1.0)] * 7, x0=xbest, seed=seed,
                                    maxiter=maxiter or 30, popsize=8, tol=1e-6,
                                    polish=False, init="sobol")
        if de.fun < fbest:
            xbest, fbest = de.x, de.fun
        order = []
    polish = [xbest] + [xs[k] for k in order[1:2]]
    for x in polish:
        res = minimize(objective, x, method="Nelder-Mead",
                       options={"xatol": 1e-4, "fatol": 1e-6,
                                "maxfev": 60 * (maxiter or 10)})
        if res.fun < fbest:
            xbest, fbest = res.x, res.fun
    intensities, probabilities = decode(xbest, protocol)
    result = _key_fn(protocol)(params, intensities, probabilities)
    return OptimResult(intensities, probabilities, result, evals[0],
                       time.perf_counter() - t0)
