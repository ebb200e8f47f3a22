"""Detector model: efficiency, dark counts, dead time, jitter, afterpulsing, accounting."""
import numpy as np
import pytest

from combkey.sim.detector import DetectorConfig, detect


def test_efficiency_and_accounting():
    rng = np.random.default_rng(1)
    ph = np.sort(rng.random(20_000) * 1e12)       # 20 kHz over 1 s: dead time rarely matters
    d = detect(ph, 1e12, DetectorConfig(efficiency=0.6, dark_rate=0, jitter_ps=0), rng)
    assert d.photons == 20_000
    assert abs((d.photons - d.missed) / d.photons - 0.6) < 0.02
    assert d.times.size == d.photons - d.missed + d.dark + d.afterpulses - d.dead


def test_dead_time_enforced_and_counted():
    rng = np.random.default_rng(2)
    ph = np.arange(0, 1e7, 1000.0)                 # a photon every ns, dead time 40 ns
    d = detect(ph, 1e7, DetectorConfig(efficiency=1, dark_rate=0, jitter_ps=0), rng)
    assert (np.diff(d.times) >= 40_000 - 1e-6).all()
    assert d.dead == ph.size - d.times.size


def test_dark_counts_rate():
    rng = np.random.default_rng(3)
    d = detect([], 1e12, DetectorConfig(dark_rate=5000, dead_time_ps=0, jitter_ps=0), rng)
    assert abs(d.times.size - 5000) < 5 * np.sqrt(5000)


def test_jitter_gaussian():
    rng = np.random.default_rng(4)
    ph = np.arange(1, 20_001) * 1e6
    d = detect(ph, 3e10, DetectorConfig(efficiency=1, dark_rate=0, jitter_ps=25), rng)
    err = d.times - ph
    assert abs(err.std() - 25) < 1.0 and abs(err.mean()) < 1.0


def test_afterpulses_follow_clicks():
    rng = np.random.default_rng(5)
    ph = np.arange(1, 5001) * 1e7                  # clicks 10 us apart
    cfg = DetectorConfig(efficiency=1, dark_rate=0, jitter_ps=0, afterpulse_prob=0.1,
                         afterpulse_tau_ps=10_000, dead_time_ps=40_000)
    d = detect(ph, 6e10, cfg, rng)
    assert 350 < d.afterpulses < 650
    assert d.times.size == 5000 + d.afterpulses - d.dead


@pytest.mark.parametrize("kw,msg", [({"efficiency": 1.5}, "efficiency must be in"),
                                    ({"dark_rate": -1}, "dark_rate must be >= 0"),
                                    ({"afterpulse_prob": 1.0}, "afterpulse_prob must be in")])
def test_config_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        DetectorConfig(**kw)
