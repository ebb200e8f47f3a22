"""Key-rate engine: SNS-TF-QKD (with AOPP, finite key) and four-intensity MDI-QKD.

Public interface (each documented in its module):

* :mod:`combkey.keyrate.params`: ``LinkParams`` (``from_dict(d, protocol)``, ``eta_arm``,
  ``dark_total``), ``ParamError``.
* :mod:`combkey.keyrate.chernoff`: ``Ledger``, ``e_lower``, ``e_upper``, ``o_lower``, ``o_upper``.
* :mod:`combkey.keyrate.sns`: ``SNSCounts``, ``sns_click_probabilities``,
  ``sns_expected_counts``, ``sns_finite_key``, ``sns_rate``.
* :mod:`combkey.keyrate.mdi`: ``MDICounts``, ``mdi_expected_counts``, ``mdi_finite_key``,
  ``mdi_rate``.
* :mod:`combkey.keyrate.common`: ``KeyResult``, ``plob``, ``h2``.
* :mod:`combkey.keyrate.optimize`: ``optimize(params, protocol)``.
* ``combkey keyrate sns|mdi`` (:mod:`combkey.keyrate.cli`), ``combkey bench keyrate``
  (:mod:`combkey.keyrate.bench`). JSON schema: ``docs/keyrate.md``.

All rates are per channel per sent pulse unless named ``_bps`` (which multiply by ``clock_hz``
and ``channels``).
"""
from .chernoff import Ledger, e_lower, e_upper, o_lower, o_upper
from .common import KeyResult, h2, plob
from .mdi import MDICounts, mdi_expected_counts, mdi_finite_key, mdi_rate
from .optimize import optimize
from .params import LinkParams, ParamError
from .sns import SNSCounts, sns_click_probabilities, sns_expected_counts, sns_finite_key, sns_rate

__all__ = ["Ledger", "e_lower", "e_upper", "o_lower", "o_upper", "KeyResult", "h2", "plob",
           "MDICounts", "mdi_expected_counts", "mdi_finite_key", "mdi_rate", "optimize",
           "LinkParams", "ParamError", "SNSCounts", "sns_click_probabilities",
           "sns_expected_counts", "sns_finite_key", "sns_rate", "rate"]


def rate(params, intensities=None, probabilities=None):
    """Return the :class:`KeyResult` of ``params`` for its protocol (expected counts)."""
    if params.protocol == "mdi":
        return mdi_rate(params, intensities, probabilities)
    return sns_rate(params, intensities, probabilities)
