"""FreqCounter, RefPhaseEstimator and LockMonitor against their models."""
import dataclasses

import numpy as np
import pytest

from combkey.gateware.dsp.freq_counter import FreqCounter, counts_from_phase, freq_counter_model
from combkey.gateware.dsp.lock_monitor import (
    LockMonitor,
    LockMonitorConfig,
    LockMonitorModel,
    LockState,
)
from combkey.gateware.dsp.ref_phase import (
    RefPhaseEstimator,
    RefPhaseModel,
    events_from_counts,
)
from combkey.gateware.stream import make_simulator, stream_get, stream_put


def rtl_freq_counter(beat, gate, count_width):
    dut = FreqCounter(count_width=count_width)
    sim = make_simulator(dut)
    got = []

    async def drive(ctx):
        ctx.set(dut.gate_cycles, gate)
        ctx.set(dut.o.ready, 1)
        for b in beat:
            ctx.set(dut.beat, int(b))
            _, _, v, p = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if v:
                got.append(p)
        _, _, v, p = await ctx.tick().sample(dut.o.valid, dut.o.payload)
        if v:
            got.append(p)
        got.append(ctx.get(dut.count_overflows))

    sim.add_testbench(drive)
    sim.run()
    return got[:-1], got[-1]


def test_freq_counter_random_and_saturation():
    rng = np.random.default_rng(0)
    beat = (rng.random(300) < 0.5).astype(int)
    beat[:2] = 1                       # an edge on the very first cycle
    beat[80:160] = np.arange(80) % 2   # dense toggling: 20 edges saturate a 4-bit count
    got, ovf = rtl_freq_counter(beat, 40, 4)
    want = freq_counter_model(beat, 40, 4)
    np.testing.assert_array_equal(got, want)
    raw = freq_counter_model(beat, 40, 16)
    assert ovf == int(np.sum(raw > 15)) and ovf > 0


def test_counts_from_phase_equals_the_counter_on_a_square_wave():
    f = 0.0731                          # beat, cycles per clock
    gate = 97
    k = np.arange(gate * 30)
    theta = 0.61 + f * k + 0.02 * np.sin(k / 50)
    beat = (theta % 1.0 < 0.5).astype(int)
    want = freq_counter_model(beat, gate)[1:]   # gate 0 depends on the reset state
    ends = theta[gate - 1::gate]
    np.testing.assert_array_equal(counts_from_phase(ends), want)


def rtl_ref_phase(periods, min_counts, count_width, seed):
    dut = RefPhaseEstimator(count_width=count_width)
    sim = make_simulator(dut)
    rng = np.random.default_rng(seed)
    got = []
    events = [e for c in periods for e in events_from_counts(*c, rng=rng)]

    async def producer(ctx):
        ctx.set(dut.min_counts, min_counts)
        for ev in events:
            await stream_put(ctx, dut.i, ev)

    async def consumer(ctx):
        for _ in periods:
            p = await stream_get(ctx, dut.o)
            got.append(dict(phase=p.phase, n0a=p.n0a, n1a=p.n1a, n0b=p.n0b, n1b=p.n1b,
                            valid_est=p.valid_est))
        got.append(ctx.get(dut.count_overflows))

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got[:-1], got[-1], events


def test_ref_phase_estimator_corners_and_random():
    rng = np.random.default_rng(1)
    periods = [(0, 0, 0, 0), (5, 0, 0, 0), (0, 5, 0, 0), (0, 0, 5, 0), (0, 0, 0, 5),
               (3, 3, 3, 3), (20, 0, 0, 19), (0, 20, 19, 0), (9, 2, 2, 9)]
    periods += [tuple(int(v) for v in rng.integers(0, 12, 4)) for _ in range(8)]
    got, ovf, events = rtl_ref_phase(periods, min_counts=4, count_width=4, seed=2)
    mdl = RefPhaseModel(min_counts=4, count_width=4)
    want = mdl.events(events)
    assert got == want
    assert ovf == mdl.count_overflows > 0    # 20 clicks in a 4-bit counter
    assert want[0]["valid_est"] == 0 and want[5]["valid_est"] == 0   # no clicks; I = Q = 0
    # phase of (n0a - n1a, n0b - n1b) = (5, 0), (0, 5): 0 and a quarter turn
    assert abs(want[1]["phase"]) < 64 and abs(want[3]["phase"] - 16384) < 64


def test_ref_phase_model_rejects_negative_counts():
    with pytest.raises(ValueError, match="click counts must be >= 0"):
        RefPhaseModel().period(-1, 0, 0, 0)


CFG_FIELDS = [f.name for f in dataclasses.fields(LockMonitorConfig)]


def rtl_lock_monitor(err, act, cfg, ew, ow):
    dut = LockMonitor(err_width=ew, out_width=ow)
    sim = make_simulator(dut)
    got = []

    async def drive(ctx):
        for name in CFG_FIELDS:
            ctx.set(getattr(dut, name), getattr(cfg, name))
        for e, a in zip(err, act, strict=True):
            await stream_put(ctx, dut.i, {"err": int(e), "act": int(a)})
            row = await ctx.tick().sample(dut.state, dut.offset, dut.hold, dut.clear,
                                          dut.loss_count, dut.sweep_count).until(dut.done)
            got.append(tuple(row))

    sim.add_testbench(drive)
    sim.run()
    return np.array(got)


def model_lock_monitor(err, act, cfg, ew, ow):
    mdl = LockMonitorModel(cfg, err_width=ew, out_width=ow)
    rows = []
    for e, a in zip(err, act, strict=True):
        st, off, hold, clear = mdl.step(int(e), int(a))
        rows.append((st, off, int(hold), int(clear), mdl.loss_count, mdl.sweep_count))
    return np.array(rows)


@pytest.mark.parametrize("sweep", [0, 1])
def test_lock_monitor_lock_loss_sweep_capture(sweep):
    ew, ow = 8, 8
    cfg = LockMonitorConfig(threshold=10, lock_samples=5, unlock_samples=3, capture_samples=2,
                            acquire_timeout=12, sweep_enable=sweep, sweep_step=25,
                            sweep_min=-60, sweep_max=70)
    rng = np.random.default_rng(4)
    # lock, lose it, sweep across both limits (wrap of direction), capture, lock again;
    # then full-scale errors of both signs.
    err = np.concatenate([rng.integers(-8, 9, 10), np.full(4, 50), np.full(15, -90),
                          [3, 4], rng.integers(-10, 11, 8), [-128, 127, -128, 127, 0],
                          rng.integers(-20, 21, 40)])
    act = rng.integers(-(1 << (ow - 1)), 1 << (ow - 1), len(err))
    got = rtl_lock_monitor(err, act, cfg, ew, ow)
    want = model_lock_monitor(err, act, cfg, ew, ow)
    np.testing.assert_array_equal(got, want)
    assert LockState.LOCKED in want[:, 0] and want[-1, 4] >= 1
    if sweep:
        assert LockState.SWEEP in want[:, 0]
        assert want[:, 1].max() == 70 and want[:, 1].min() == -60   # both sweep limits
    else:
        assert LockState.SWEEP not in want[:, 0]


def test_lock_monitor_config_errors():
    with pytest.raises(ValueError, match="sweep_min must be <= sweep_max"):
        LockMonitorConfig(sweep_min=1, sweep_max=0).check(8, 8)
    with pytest.raises(ValueError, match="threshold must be an integer in"):
        LockMonitorConfig(threshold=200).check(8, 8)
