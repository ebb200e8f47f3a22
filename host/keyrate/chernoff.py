"""Chernoff-type fluctuation bounds (closed forms), joint constraints, and the failure ledger.

Interface
---------
Closed forms of ``keyrate-notes.md`` section 3.2 (label [C], checked numerically in section 7),
each vectorised over ``x`` (numpy broadcasting), ``xi`` the failure probability of ONE use,
``beta = ln(1/xi)``:

* ``e_upper(x, xi)`` expected value from an observed count, upper: ``x + b + sqrt(2 b x + b^2)``
* ``e_lower(x, xi)`` expected from observed, lower:
  ``max(0, x - b/2 - sqrt(2 b x + b^2/4))``
* ``o_upper(y, xi)`` observed from expected, upper: ``y + b/2 + sqrt(2 b y + b^2/4)``
* ``o_lower(y, xi)`` observed from expected, lower: ``max(0, y - sqrt(2 b y))``

``Ledger(xi, finite=True)`` applies the same bounds and records every use as a
:class:`LedgerEntry` ``(label, kind, failure)``; ``.total_failure`` is the sum (union bound) of
all recorded failures, ``.count`` the number of uses. With ``finite=False`` every bound is the
identity and records nothing (asymptotic limit). Composable terms that are not fluctuation
bounds (``eps_cor``, ``eps_pa``, ``eps_hat``) are recorded with :meth:`Ledger.add`.

Joint constraints (notes section 3.3, [C]): ``Ledger.joint_lower(label, coeffs, counts)``
bounds ``sum_i a_i <n_i>`` from below for non-negative ``a_i`` by sorting ``a`` ascending and
summing ``(a_k - a_{k-1}) * E^L(n_k + ... + n_last)``; ``joint_upper`` likewise with ``E^U``.
Each nested bound with a non-zero step costs one ``xi``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["e_upper", "e_lower", "o_upper", "o_lower", "Ledger", "LedgerEntry"]


def _beta(xi):
    xi = np.asarray(xi, dtype=float)
    if np.any((xi <= 0) | (xi >= 1)):
        raise ValueError(f"xi must be in (0, 1), not {xi!r}")
    return np.log(1.0 / xi)


def e_upper(x, xi):
    """Upper bound of the expected value given an observed count ``x`` (fails w.p. ``xi``)."""
    b = _beta(xi)
    x = np.maximum(np.asarray(x, dtype=float), 0.0)
    return x + b + np.sqrt(2 * b * x + b * b)


def e_lower(x, xi):
    """Lower bound of the expected value given an observed count ``x`` (fails w.p. ``xi``)."""
    b = _beta(xi)
    x = np.maximum(np.asarray(x, dtype=float), 0.0)
    return np.maximum(0.0, x - b / 2 - np.sqrt(2 * b * x + b * b / 4))


def o_upper(y, xi):
    """Upper bound of an observed count given its expected value ``y`` (fails w.p. ``xi``)."""
    b = _beta(xi)
    y = np.maximum(np.asarray(y, dtype=float), 0.0)
    return y + b / 2 + np.sqrt(2 * b * y + b * b / 4)


def o_lower(y, xi):
    """Lower bound of an observed count given its expected value ``y`` (fails w.p. ``xi``)."""
    b = _beta(xi)
    y = np.maximum(np.asarray(y, dtype=float), 0.0)
    return np.maximum(0.0, y - np.sqrt(2 * b * y))


@dataclass(frozen=True)
class LedgerEntry:
    """One recorded use: ``label`` (what was bounded), ``kind``, ``failure`` probability."""

    label: str
    kind: str
    failure: float


@dataclass
class Ledger:
    """Record of every bound and composable term used in one key-length computation."""

    xi: float = 1e-10
    finite: bool = True
    entries: list = field(default_factory=list)

    def _use(self, fn, kind, label, x):
        if not self.finite:
            return np.asarray(x, dtype=float) if np.ndim(x) else float(x)
        self.entries.append(LedgerEntry(label, kind, self.xi))
        out = fn(x, self.xi)
        return out if np.ndim(out) else float(out)

    def e_upper(self, label, x):
        """Record and return :func:`e_upper` of ``x`` (identity when not finite)."""
        return self._use(e_upper, "E^U", label, x)

    def e_lower(self, label, x):
        """Record and return :func:`e_lower` of ``x`` (identity when not finite)."""
        return self._use(e_lower, "E^L", label, x)

    def o_upper(self, label, y):
        """Record and return :func:`o_upper` of ``y`` (identity when not finite)."""
        return self._use(o_upper, "O^U", label, y)

    def o_lower(self, label, y):
        """Record and return :func:`o_lower` of ``y`` (identity when not finite)."""
        return self._use(o_lower, "O^L", label, y)

    def add(self, label, failure, kind="composable"):
        """Record a composable term (e.g. ``eps_cor``) that is not a fluctuation bound."""
        if self.finite:
            self.entries.append(LedgerEntry(label, kind, float(failure)))

    def _joint(self, label, coeffs, counts, bound):
        a = np.asarray(coeffs, dtype=float)
        if np.any(a < 0):
            raise ValueError(f"joint constraint coefficients must be >= 0, not {coeffs!r}")
        order = np.argsort(a, kind="stable")
        a = a[order]
        n = [np.asarray(counts[i], dtype=float) for i in order]
        total = 0.0
        prev = 0.0
        for k in range(len(a)):
            if a[k] > prev:
                tail = sum(n[k:])
                total = total + (a[k] - prev) * bound(f"{label}[joint {k}]", tail)
            prev = a[k]
        return total

    def joint_lower(self, label, coeffs, counts):
        """Lower bound of ``sum a_i <n_i>`` from observed ``counts`` by joint constraints."""
        return self._joint(label, coeffs, counts, self.e_lower)

    def joint_upper(self, label, coeffs, counts):
        """Upper bound of ``sum a_i <n_i>`` from observed ``counts`` by joint constraints."""
        return self._joint(label, coeffs, counts, self.e_upper)

    @property
    def total_failure(self):
        """Sum of the failure probabilities of every recorded entry (union bound)."""
        return float(sum(e.failure for e in self.entries))

    @property
    def count(self):
        """Number of recorded entries."""
        return len(self.entries)

    def summary(self):
        """Return ``{kind: count}`` and the total, for reports."""
        kinds = {}
        for e in self.entries:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
        return {"uses": kinds, "total_failure": self.total_failure}
