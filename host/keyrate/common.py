"""Shared pieces of the key-rate engine: entropy, PLOB, finite-size penalties, ``KeyResult``.

Interface
---------
* ``h2(x)``: binary entropy in bits, vectorised, ``h2(0) = h2(1) = 0`` (notes 1.1, [D]).
* ``plob(eta)``: repeaterless secret-key capacity ``-log2(1 - eta)`` bits per channel use
  (Pirandola, Laurenza, Ottaviani, Banchi, "Fundamental limits of repeaterless quantum
  communications", Nat. Commun. 8, 15043 (2017), doi:10.1038/ncomms15043; notes 1.3 [V]).
* ``sns_penalty_bits(eps_cor, eps_pa, eps_hat)``:
  ``log2(2/eps_cor) + 2 log2(1/(sqrt(2) eps_pa eps_hat))`` (notes 2.5; constants labelled [R]
  there: recalled from Jiang, Yu, Hu, Wang, PR Applied 12, 024061 (2019), not re-read).
* ``mdi_penalty_bits(eps_cor, eps_prime, eps_hat, eps_pa)``:
  ``log2(8/eps_cor) + 2 log2(2/(eps_prime eps_hat)) + 2 log2(1/(2 eps_pa))`` (notes 4.6, [C]).
  Both are plain functions: callers may pass ``penalty_bits=`` to the key-length functions to
  use other constants.
* ``KeyResult``: outcome of one key-length computation (see its docstring).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .chernoff import Ledger

__all__ = ["h2", "plob", "KeyResult", "sns_penalty_bits", "mdi_penalty_bits"]


def h2(x):
    """Binary entropy ``-x log2 x - (1-x) log2(1-x)`` (vectorised; 0 at 0 and 1)."""
    x = np.clip(np.asarray(x, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -x * np.log2(x) - (1 - x) * np.log2(1 - x)
    out = np.where((x <= 0) | (x >= 1), 0.0, out)
    return out if np.ndim(out) else float(out)


def plob(eta):
    """PLOB bound ``-log2(1 - eta)`` bits per channel use for ``eta`` in [0, 1] (inf at 1)."""
    eta = np.asarray(eta, dtype=float)
    if np.any((eta < 0) | (eta > 1)):
        raise ValueError(f"eta must be in [0, 1], not {eta!r}")
    with np.errstate(divide="ignore"):
        out = -np.log1p(-eta) / math.log(2)
    return out if np.ndim(out) else float(out)


def sns_penalty_bits(eps_cor, eps_pa, eps_hat):
    """Finite-size penalty of the SNS key length (notes 2.5, constants [R])."""
    return math.log2(2 / eps_cor) + 2 * math.log2(1 / (math.sqrt(2) * eps_pa * eps_hat))


def mdi_penalty_bits(eps_cor, eps_prime, eps_hat, eps_pa):
    """Finite-size penalty of the MDI key length (notes 4.6, [C])."""
    return (math.log2(8 / eps_cor) + 2 * math.log2(2 / (eps_prime * eps_hat))
            + 2 * math.log2(1 / (2 * eps_pa)))


@dataclass
class KeyResult:
    """Outcome of one key-length computation.

    Attributes
    ----------
    key_bits : int
        Final key length in bits, ``>= 0`` (``floor`` of the key-length formula, 0 if negative).
    key_rate_per_pulse : float
        Key bits per sent pulse (per channel). Finite: ``key_bits / N``; asymptotic: the
        unrounded non-negative key-length formula divided by ``N``.
    abort_reason : str or None
        Why no key was produced (human-readable), ``None`` when ``key_bits > 0`` or, in the
        asymptotic case, when the rate is positive.
    bounds : dict
        Estimated quantities: SNS ``s1_lower``, ``e1_upper`` (of the untagged Z bits),
        ``e1_upper_x`` (X-window estimate), ``n1_lower``, ``n_t``, ``E_z``, ``E_x11``,
        with AOPP also ``aopp_pairs``, ``aopp_kept``, ``aopp_E``, ``aopp_n1_lower``,
        ``aopp_e1_upper``; MDI ``s11_lower``, ``e11_upper``, ``s11_at_key``, ``e11_at_key``,
        ``sz11_lower``, ``phi11_upper``, ``s0_lower``, ``n_zz``, ``E_zz``, ``E_xx``. Always
        ``leak_ec_bits``, ``penalty_bits`` and ``key_length_raw`` (unrounded key length).
    ledger : Ledger
        Every bound and composable term used, with its failure probability.
    epsilon_total : float
        ``ledger.total_failure`` (0 in the asymptotic case).
    """

    key_bits: int
    key_rate_per_pulse: float
    abort_reason: str | None
    bounds: dict = field(default_factory=dict)
    ledger: Ledger = field(default_factory=Ledger)
    epsilon_total: float = 0.0

    def to_dict(self):
        """Return a JSON-friendly dict (ledger summarised)."""
        return {
            "key_bits": int(self.key_bits),
            "key_rate_per_pulse": float(self.key_rate_per_pulse),
            "abort_reason": self.abort_reason,
            "bounds": {k: (float(v) if isinstance(v, (int, float, np.floating, np.integer))
                           else v) for k, v in self.bounds.items()},
            "epsilon_total": float(self.epsilon_total),
            "ledger": self.ledger.summary(),
        }


def finish(length, pulses, ledger, bounds, reason=None):
    """Build a :class:`KeyResult` from an unrounded key length (helper for sns/mdi)."""
    length = float(length)
    if not math.isfinite(length):
        length = 0.0
    bounds["key_length_raw"] = length
    key_bits = int(math.floor(length)) if length > 0 else 0
    if ledger.finite:
        rate = key_bits / pulses
    else:
        rate = max(length, 0.0) / pulses
    if rate <= 0 and reason is None:
        reason = (f"key length {length:.4g} bits is not positive: error-correction leakage "
                  f"{bounds.get('leak_ec_bits', 0):.4g} and penalty "
                  f"{bounds.get('penalty_bits', 0):.4g} bits exceed the secret bits")
    if rate > 0:
        reason = None
    return KeyResult(key_bits=key_bits, key_rate_per_pulse=rate, abort_reason=reason,
                     bounds=bounds, ledger=ledger, epsilon_total=ledger.total_failure)
