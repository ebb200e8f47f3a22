"""LoopCore (monitor + filter + offset/slew) against LoopCoreModel, sample by sample."""
import dataclasses

import numpy as np
import pytest

from combkey.gateware.dsp.lock_monitor import LockMonitorConfig
from combkey.gateware.dsp.loop_filter import LoopFilterConfig, pid_coefficients
from combkey.gateware.loops.core import LoopCore, LoopCoreConfig, LoopCoreModel
from combkey.gateware.stream import make_simulator, stream_get, stream_put


def rtl_core(samples, clears, cfg, ew, mw, ow):
    dut = LoopCore(err_width=ew, mon_width=mw, out_width=ow, coef_frac=12)
    sim = make_simulator(dut)
    got = []

    async def tb(ctx):
        for name, value in cfg.registers().items():
            ctx.set(getattr(dut, name.replace(".", "__")), value)
        for (e, mon, v), c in zip(samples, clears, strict=True):
            if c:
                ctx.set(dut.clear, 1)
                await ctx.tick()
                ctx.set(dut.clear, 0)
            await stream_put(ctx, dut.i, {"err": e, "mon": mon, "valid": v})
            a = await stream_get(ctx, dut.o)
            got.append((a, ctx.get(dut.locked), ctx.get(dut.monitor__state),
                        ctx.get(dut.monitor__loss_count), ctx.get(dut.act)))

    sim.add_testbench(tb)
    sim.run()
    return np.array(got)


def model_core(samples, clears, cfg, ew, mw, ow):
    mdl = LoopCoreModel(cfg, err_width=ew, mon_width=mw, out_width=ow, coef_frac=12)
    rows = []
    for (e, mon, v), c in zip(samples, clears, strict=True):
        a, _ = mdl.step(e, mon, bool(v), clear=bool(c))
        rows.append((a, int(mdl.locked), int(mdl.monitor.state), mdl.monitor.loss_count, a))
    return np.array(rows)


@pytest.mark.parametrize("variant", ["sweep_slew", "wrap"])
def test_loop_core_matches_model(variant):
    ew, mw, ow = 12, 10, 10
    rng = np.random.default_rng(7)
    flt = LoopFilterConfig(**pid_coefficients(0.8, 0.3, coef_frac=12), out_min=-400,
                           out_max=300, wrap=int(variant == "wrap"))
    mon = LockMonitorConfig(threshold=40, lock_samples=4, unlock_samples=3, capture_samples=2,
                            acquire_timeout=15, sweep_enable=int(variant != "wrap"),
                            sweep_step=37, sweep_min=-200, sweep_max=250)
    cfg = LoopCoreConfig(flt, mon, slew=60 if variant != "wrap" else 0)
    n = 90
    err = np.concatenate([rng.integers(-30, 30, 20), np.full(10, 1500),
                          rng.integers(-2048, 2048, 30), rng.integers(-20, 20, 30)])
    mon_e = np.clip(err, -512, 511)
    valid = (rng.random(n) > 0.1).astype(int)
    samples = [(int(a), int(b), int(c)) for a, b, c in zip(err, mon_e, valid, strict=True)]
    clears = rng.random(n) < 0.04
    got = rtl_core(samples, clears, cfg, ew, mw, ow)
    want = model_core(samples, clears, cfg, ew, mw, ow)
    np.testing.assert_array_equal(got, want)
    assert want[:, 1].any()                       # locked at some point
    if variant != "wrap":
        assert want[-1, 3] >= 1                   # lost lock at least once
        assert np.abs(np.diff(want[:, 0])).max() <= 60   # slew limit holds


def test_loop_core_config_errors():
    with pytest.raises(ValueError, match="slew must be an integer in"):
        LoopCoreModel(LoopCoreConfig(slew=-1), out_width=10)
    with pytest.raises(ValueError, match="threshold must be an integer in"):
        LoopCoreModel(LoopCoreConfig(monitor=dataclasses.replace(LockMonitorConfig(),
                                                                 threshold=1 << 20)))
