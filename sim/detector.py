"""Single-photon detector model: photon arrival times in, electrical pulse rise times out.

:class:`DetectorConfig` fields (times in ps, rates in Hz):
``efficiency`` (0..1, each photon detected with this probability), ``dark_rate`` (Poisson dark
counts per second), ``dead_time_ps`` (non-paralysable: an event within the dead time of the last
registered click is lost), ``jitter_ps`` (RMS of the Gaussian timing jitter added to every click),
``afterpulse_prob`` (probability that a registered click triggers one afterpulse) with an
exponential delay of mean ``afterpulse_tau_ps`` counted from the end of the dead time, and
``delay_ps`` (fixed cable/electronics delay).

:func:`detect` returns :class:`Detection` with the sorted pulse times (``times``) and the count
of every loss mechanism, so that injected = detected + lost is checkable: ``photons``,
``missed`` (efficiency), ``dark``, ``afterpulses``, ``dead`` (candidates inside the dead time).
:func:`pulses_to_therm` turns pulse times into the sampled taps of a relay channel through
:class:`combkey.gateware.timing.tdc.DelayLineModel`, ready for :class:`~combkey.gateware.timing
.relay.RelayTagger` ``therm``.
"""
import dataclasses

import numpy as np

from ..gateware.timing.tdc import DelayLineModel

__all__ = ["DetectorConfig", "Detection", "detect", "pulses_to_therm"]


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Detector parameters (module docstring). Defaults: a typical SNSPD."""

    efficiency: float = 0.8
    dark_rate: float = 100.0
    dead_time_ps: float = 40_000.0
    jitter_ps: float = 30.0
    afterpulse_prob: float = 0.0
    afterpulse_tau_ps: float = 20_000.0
    delay_ps: float = 0.0

    def __post_init__(self):
        checks = (("efficiency", 0 <= self.efficiency <= 1, "in [0, 1]"),
                  ("dark_rate", self.dark_rate >= 0, ">= 0"),
                  ("dead_time_ps", self.dead_time_ps >= 0, ">= 0"),
                  ("jitter_ps", self.jitter_ps >= 0, ">= 0"),
                  ("afterpulse_prob", 0 <= self.afterpulse_prob < 1, "in [0, 1)"),
                  ("afterpulse_tau_ps", self.afterpulse_tau_ps > 0, "> 0"))
        for name, ok, what in checks:
            if not ok:
                raise ValueError(f"{name} must be {what}, not {getattr(self, name)!r}")


@dataclasses.dataclass
class Detection:
    """Output of :func:`detect`: pulse times (ps, sorted) and per-mechanism counts."""

    times: np.ndarray
    photons: int
    missed: int
    dark: int
    afterpulses: int
    dead: int


def detect(photon_ps, duration_ps, cfg, rng):
    """Turn photon arrival times (ps, any order) in ``[0, duration_ps)`` into detector pulses."""
    photon_ps = np.asarray(photon_ps, dtype=float)
    if duration_ps <= 0:
        raise ValueError(f"duration_ps must be > 0, not {duration_ps!r}")
    seen = photon_ps[rng.random(photon_ps.size) < cfg.efficiency]
    n_dark = rng.poisson(cfg.dark_rate * duration_ps * 1e-12)
    dark = rng.random(n_dark) * duration_ps
    cand = np.sort(np.concatenate([seen, dark]))
    out, dead, after = [], 0, 0
    pending = []          # afterpulse times, kept sorted
    i = 0
    last = -np.inf
    while i < cand.size or pending:
        if pending and (i >= cand.size or pending[0] <= cand[i]):
            t = pending.pop(0)
            is_after = True
        else:
            t = cand[i]
            i += 1
            is_after = False
        if t - last < cfg.dead_time_ps:
            dead += 1
            continue
        out.append(t)
        after += is_after
        last = t
        if cfg.afterpulse_prob and rng.random() < cfg.afterpulse_prob:
            ta = t + cfg.dead_time_ps + rng.exponential(cfg.afterpulse_tau_ps)
            if ta < duration_ps:
                pending.append(ta)
                pending.sort()
    times = np.asarray(out) + cfg.delay_ps
    if cfg.jitter_ps:
        times = times + rng.normal(0, cfg.jitter_ps, times.size)
    return Detection(np.sort(times), int(photon_ps.size), int(photon_ps.size - seen.size),
                     int(n_dark), int(after), int(dead))


def pulses_to_therm(pulses_ps, dl_cfg, n_cycles, width_ps=None, channel=0):
    """Sampled taps ``uint8[n_cycles, lines*taps]`` of one channel for the given pulse times."""
    model = DelayLineModel(dl_cfg, channel)
    width = 1.5 * dl_cfg.period_ps if width_ps is None else width_ps
    return model.sample(np.sort(np.asarray(pulses_ps, dtype=float)), width, n_cycles)
