"""Throughput at the dead-time limit: nothing lost unthrottled, every loss counted throttled."""
import numpy as np
import pytest

from combkey.gateware.timing.tagger import TaggerConfig, tagger_model
from combkey.tagger import throughput_run

from .test_tagger import rtl_tagger


def dead_time_limit_hits(channels, cycles, holdoff, seed):
    rng = np.random.default_rng(seed)
    period = holdoff + 1
    phase = rng.integers(0, period, channels)
    phase[: channels // 2] = 0                    # half the channels fire in the same cycle
    hit = (np.arange(cycles)[:, None] - phase[None, :]) % period == 0
    hit[-60:] = False
    return hit, rng.integers(0, 32, (cycles, channels)) * hit


@pytest.mark.parametrize("rd_p,expect_loss", [(1.0, False), (0.3, True)])
def test_rtl_at_dead_time_limit(rd_p, expect_loss):
    """16 channels, each at one hit per 16 cycles (the merger's 1 tag/cycle), RTL vs model."""
    cfg = TaggerConfig(channels=16, code_bits=5, batch_depth=4, tag_depth=16)
    n = 700
    hit, code = dead_time_limit_hits(16, n, 15, 1)
    rng = np.random.default_rng(2)
    z = np.zeros(n, np.int64)
    ready = np.ones(n, bool)
    rd = rng.random(n) < rd_p
    rd[-60:] = True
    got = rtl_tagger(cfg, hit, code, z, z, ready, rd)
    want = tagger_model(hit, code, z, z, ready, rd, cfg)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    lost = int(want["lost"][-1].sum())
    tagged = int(want["tagged"][-1])
    in_flight = int(hit.sum()) - tagged - lost
    print(f"\ninjected {int(hit.sum())} tagged {tagged} lost(counted) {lost} "
          f"in flight {in_flight}")
    assert (lost > 0) == expect_loss
    assert 0 <= in_flight <= cfg.tag_depth + cfg.batch_depth * 16


def test_model_long_run_accounting():
    free = throughput_run(16, 5_000, holdoff=15, rd_p=1.0)
    assert free["lost"] == 0 and free["in_flight"] == 0
    throttled = throughput_run(16, 3_000, holdoff=15, rd_p=0.5, tag_depth=64)
    assert throttled["lost"] > 0
    assert throttled["injected"] == throttled["tagged"] + throttled["lost"] + \
        throttled["in_flight"]
    assert throttled["in_flight"] <= 64 + 8 * 16


@pytest.mark.slow
def test_model_soak_dead_time_limit():
    free = throughput_run(16, 400_000, holdoff=15, rd_p=1.0, seed=3)
    assert free["lost"] == 0 and free["in_flight"] == 0
    assert free["tagged"] == free["injected"] > 390_000
