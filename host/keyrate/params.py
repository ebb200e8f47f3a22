"""Link parameters of a key-rate computation: the validated form of ``--params FILE.json``.

Interface
---------
``LinkParams`` (frozen dataclass), built with ``LinkParams.from_dict(d, protocol)`` where
``protocol`` is ``"sns"`` or ``"mdi"``. Every error is a :class:`ParamError` (a ``ValueError``)
whose message names the field: ``"detector_efficiency must be in (0, 1], not 1.5"``.

JSON fields (units in the names; full schema with defaults in ``docs/keyrate.md``):

=============================  ========  =====================================================
field                          default   meaning
=============================  ========  =====================================================
``distance_km``                required  total Alice-Bob fibre length; each arm is half of it
``fiber_loss_db_per_km``       0.2       fibre attenuation
``detector_efficiency``        required  detection efficiency (incl. Charlie's insertion loss)
``dark_count_probability``     required  per pulse (time window) per detector
``misalignment_error``         required  SNS: X-window flip probability; MDI: Z-basis e_d
``misalignment_error_x``       null      MDI: X-basis e_d (default: ``misalignment_error``)
``ec_efficiency``              1.1       error-correction inefficiency ``f``
``pulses``                     required  N, total pulses sent per channel in one key block
``clock_hz``                   required  pulse repetition rate (per channel)
``epsilon``                    1e-10     failure probability of EACH bound / composable term
``channels``                   1         WDM channels (identical); bps is summed over them
``crosstalk_cps``              0         extra noise counts per second per detector
``aopp``                       false     SNS only: actively odd-parity pairing
``finite``                     true      finite-key analysis (false: asymptotic, N -> inf)
``intensities``                null      SNS: mu_z, mu_1, mu_2; MDI: mu_z, mu_y, mu_x
``probabilities``              null      SNS: p_z, epsilon_send, p_1, p_2; MDI: p_z,p_y,p_x,p_o
``detection_window_s``         null      gate width converting crosstalk_cps to a probability
``x_postselect_fraction``      0.1       SNS: fraction Delta/pi of X11 pairs kept by phase
``eps_cor`` ``eps_pa``         null      composable terms (default: ``epsilon``)
``eps_hat``                    null      smoothing term (default: ``epsilon``)
=============================  ========  =====================================================

SNS probabilities are absolute per-window probabilities: a window is Z with ``p_z``, an X window
of intensity mu_1 with ``p_1``, of mu_2 with ``p_2``, and an X window of vacuum with
``p_0 = 1 - p_z - p_1 - p_2`` (must be > 0). ``epsilon_send`` is the probability of sending in a
Z window. MDI probabilities must sum to 1 (within 1e-6).

Derived quantities
------------------
``eta_arm``: per-arm transmittance including detection,
``detector_efficiency * 10**(-fiber_loss_db_per_km * distance_km / 20)`` (symmetric link, each
arm carries half of the total loss).

``dark_total``: the per-detector per-window noise-click probability used by every model,
``dark_count_probability + crosstalk_cps * window`` with ``window = detection_window_s`` if given,
otherwise ``1 / clock_hz`` (the whole clock period is the detection window: the conservative
choice when the gate width is unknown).

``eta_channel``: Alice-Bob fibre transmittance ``10**(-alpha L / 10)``. The PLOB comparison
(:func:`combkey.keyrate.plob`) uses it alone (the "absolute" bound) and multiplied by
``detector_efficiency`` (the "relative" bound, same detection loss assumed).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["ParamError", "LinkParams", "SNS_INTENSITY_KEYS", "SNS_PROBABILITY_KEYS",
           "MDI_INTENSITY_KEYS", "MDI_PROBABILITY_KEYS", "PROTOCOLS"]

PROTOCOLS = ("sns", "mdi")
SNS_INTENSITY_KEYS = ("mu_z", "mu_1", "mu_2")
SNS_PROBABILITY_KEYS = ("p_z", "epsilon_send", "p_1", "p_2")
MDI_INTENSITY_KEYS = ("mu_z", "mu_y", "mu_x")
MDI_PROBABILITY_KEYS = ("p_z", "p_y", "p_x", "p_o")


class ParamError(ValueError):
    """Invalid key-rate parameter; the message names the field."""


def _num(d, name, *, default=None, required=False, lo=None, hi=None, lo_open=False,
         hi_open=False, integer=False):
    if name not in d or d[name] is None:
        if required:
            raise ParamError(f"{name} is required")
        return default
    v = d[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ParamError(f"{name} must be a number, not {v!r}")
    if integer and (float(v) != int(v)):
        raise ParamError(f"{name} must be an integer, not {v!r}")
    if not math.isfinite(v):
        raise ParamError(f"{name} must be finite, not {v!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)) or \
            hi is not None and (v > hi or (hi_open and v == hi)):
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ParamError(f"{name} must be in {left}{lo_s}, {hi_s}{right}, not {v!r}")
    return int(v) if integer else float(v)


def _flag(d, name, default):
    if name not in d or d[name] is None:
        return default
    v = d[name]
    if not isinstance(v, bool):
        raise ParamError(f"{name} must be true or false, not {v!r}")
    return v


_FIELDS = ("distance_km", "fiber_loss_db_per_km", "detector_efficiency",
           "dark_count_probability", "misalignment_error", "ec_efficiency", "pulses", "clock_hz",
           "epsilon", "channels", "crosstalk_cps", "aopp", "finite", "intensities",
           "probabilities", "detection_window_s", "x_postselect_fraction", "misalignment_error_x",
           "eps_cor", "eps_pa", "eps_hat", "protocol", "name", "comment")


@dataclass(frozen=True)
class LinkParams:
    """Validated link, detector and protocol parameters (see the module docstring for units)."""

    distance_km: float
    detector_efficiency: float
    dark_count_probability: float
    misalignment_error: float
    pulses: float
    clock_hz: float
    fiber_loss_db_per_km: float = 0.2
    ec_efficiency: float = 1.1
    epsilon: float = 1e-10
    channels: int = 1
    crosstalk_cps: float = 0.0
    aopp: bool = False
    finite: bool = True
    intensities: dict | None = None
    probabilities: dict | None = None
    detection_window_s: float | None = None
    x_postselect_fraction: float = 0.1
    misalignment_error_x: float | None = None
    eps_cor: float | None = None
    eps_pa: float | None = None
    eps_hat: float | None = None
    protocol: str = "sns"

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, d, protocol):
        """Validate a JSON-like mapping and return ``LinkParams``; raise :class:`ParamError`."""
        if protocol not in PROTOCOLS:
            raise ParamError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
        if not isinstance(d, dict):
            raise ParamError(f"parameters must be a JSON object, not {type(d).__name__}")
        unknown = sorted(set(d) - set(_FIELDS))
        if unknown:
            raise ParamError(f"unknown field {unknown[0]!r} (known: {', '.join(_FIELDS[:-3])})")
        if "protocol" in d and d["protocol"] not in (None, protocol):
            raise ParamError(f"protocol must be {protocol!r} for this command, "
                             f"not {d['protocol']!r}")
        kw = dict(
            distance_km=_num(d, "distance_km", required=True, lo=0),
            fiber_loss_db_per_km=_num(d, "fiber_loss_db_per_km", default=0.2, lo=0),
            detector_efficiency=_num(d, "detector_efficiency", required=True, lo=0, hi=1,
                                     lo_open=True),
            dark_count_probability=_num(d, "dark_count_probability", required=True, lo=0,
                                        hi=0.5, hi_open=True),
            misalignment_error=_num(d, "misalignment_error", required=True, lo=0, hi=0.5,
                                    hi_open=True),
            ec_efficiency=_num(d, "ec_efficiency", default=1.1, lo=1),
            pulses=_num(d, "pulses", required=True, lo=1),
            clock_hz=_num(d, "clock_hz", required=True, lo=0, lo_open=True),
            epsilon=_num(d, "epsilon", default=1e-10, lo=0, hi=1, lo_open=True, hi_open=True),
            channels=_num(d, "channels", default=1, lo=1, integer=True),
            crosstalk_cps=_num(d, "crosstalk_cps", default=0.0, lo=0),
            aopp=_flag(d, "aopp", False),
            finite=_flag(d, "finite", True),
            detection_window_s=_num(d, "detection_window_s", default=None, lo=0, lo_open=True),
            x_postselect_fraction=_num(d, "x_postselect_fraction", default=0.1, lo=0, hi=1,
                                       lo_open=True),
            misalignment_error_x=_num(d, "misalignment_error_x", default=None, lo=0, hi=0.5,
                                      hi_open=True),
            eps_cor=_num(d, "eps_cor", default=None, lo=0, hi=1, lo_open=True, hi_open=True),
            eps_pa=_num(d, "eps_pa", default=None, lo=0, hi=1, lo_open=True, hi_open=True),
            eps_hat=_num(d, "eps_hat", default=None, lo=0, hi=1, lo_open=True, hi_open=True),
            protocol=protocol,
        )
        if kw["aopp"] and protocol != "sns":
            raise ParamError("aopp must be false for protocol 'mdi' (AOPP is an SNS step)")
        ikeys, pkeys = ((SNS_INTENSITY_KEYS, SNS_PROBABILITY_KEYS) if protocol == "sns"
                        else (MDI_INTENSITY_KEYS, MDI_PROBABILITY_KEYS))
        kw["intensities"] = validate_intensities(d.get("intensities"), protocol, ikeys)
        kw["probabilities"] = validate_probabilities(d.get("probabilities"), protocol, pkeys)
        return cls(**kw)

    def replace(self, **changes):
        """Return a copy with ``changes`` applied (re-validated through :meth:`from_dict`)."""
        d = self.to_dict()
        d.update(changes)
        return LinkParams.from_dict(d, self.protocol)

    def to_dict(self):
        """Return the JSON form (inverse of :meth:`from_dict`)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("intensities", "probabilities"):
            if d[key] is not None:
                d[key] = dict(d[key])
        return d

    # ------------------------------------------------------------------ derived
    @property
    def eta_channel(self):
        """Total fibre transmittance Alice-Bob, ``10**(-alpha L / 10)`` (no detector)."""
        return 10.0 ** (-self.fiber_loss_db_per_km * self.distance_km / 10.0)

    @property
    def eta_arm(self):
        """Per-arm transmittance incl. detection: ``eta_d * 10**(-alpha L / 20)``."""
        return self.detector_efficiency * 10.0 ** (-self.fiber_loss_db_per_km
                                                   * self.distance_km / 20.0)

    @property
    def window_s(self):
        """Detection window used to convert ``crosstalk_cps`` (``detection_window_s`` or 1/f)."""
        return self.detection_window_s if self.detection_window_s else 1.0 / self.clock_hz

    @property
    def dark_total(self):
        """Noise-click probability per detector per window: dark + crosstalk_cps * window."""
        return min(self.dark_count_probability + self.crosstalk_cps * self.window_s, 0.5)

    @property
    def misalignment_x(self):
        """X-basis misalignment (MDI): ``misalignment_error_x`` or ``misalignment_error``."""
        if self.misalignment_error_x is None:
            return self.misalignment_error
        return self.misalignment_error_x

    @property
    def eps_terms(self):
        """Composable terms ``(eps_cor, eps_pa, eps_hat)``, defaulting to ``epsilon``."""
        e = self.epsilon
        return (self.eps_cor or e, self.eps_pa or e, self.eps_hat or e)


def _check_keys(obj, name, keys):
    if not isinstance(obj, dict):
        raise ParamError(f"{name} must be an object, not {obj!r}")
    extra = sorted(set(obj) - set(keys))
    if extra:
        raise ParamError(f"{name}.{extra[0]} is not a known key (expected {', '.join(keys)})")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ParamError(f"{name}.{missing[0]} is required when {name} is given")
    out = {}
    for k in keys:
        v = obj[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ParamError(f"{name}.{k} must be a finite number, not {v!r}")
        out[k] = float(v)
    return out


def validate_intensities(obj, protocol, keys=None):
    """Check an intensities mapping for ``protocol``; return a read-only dict or None."""
    if obj is None:
        return None
    keys = keys or (SNS_INTENSITY_KEYS if protocol == "sns" else MDI_INTENSITY_KEYS)
    v = _check_keys(obj, "intensities", keys)
    for k, x in v.items():
        if not x > 0:
            raise ParamError(f"intensities.{k} must be > 0, not {x!r}")
    if protocol == "sns":
        if not v["mu_1"] < v["mu_2"]:
            raise ParamError(f"intensities.mu_1 must be < mu_2 ({v['mu_2']!r}), "
                             f"not {v['mu_1']!r}")
    else:
        if not v["mu_x"] < v["mu_y"]:
            raise ParamError(f"intensities.mu_x must be < mu_y ({v['mu_y']!r}), "
                             f"not {v['mu_x']!r}")
    return MappingProxyType(v)


def validate_probabilities(obj, protocol, keys=None):
    """Check a probabilities mapping for ``protocol``; return a read-only dict or None."""
    if obj is None:
        return None
    keys = keys or (SNS_PROBABILITY_KEYS if protocol == "sns" else MDI_PROBABILITY_KEYS)
    v = _check_keys(obj, "probabilities", keys)
    for k, x in v.items():
        if not 0 < x < 1:
            raise ParamError(f"probabilities.{k} must be in (0, 1), not {x!r}")
    if protocol == "sns":
        p0 = 1.0 - v["p_z"] - v["p_1"] - v["p_2"]
        if not p0 > 0:
            raise ParamError("probabilities.p_z + p_1 + p_2 must be < 1 (the rest is the "
                             f"vacuum X window), not {1.0 - p0!r}")
    else:
        total = v["p_z"] + v["p_y"] + v["p_x"] + v["p_o"]
        if abs(total - 1.0) > 1e-6:
            raise ParamError(f"probabilities.p_z + p_y + p_x + p_o must be 1, not {total!r}")
    return MappingProxyType(v)
