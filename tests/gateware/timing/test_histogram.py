"""Histogrammer (singles, start-stop, slot phase) against its model."""
import numpy as np
import pytest

from combkey.gateware.stream import make_simulator
from combkey.gateware.timing.classifier import Annotated
from combkey.gateware.timing.histogram import HistConfig, Histogrammer, histogram_model


def rtl_hist(ann, gaps, cfg, channels, bins, clear_first=False):
    dut = Histogrammer(channels=channels, bins=bins)
    out = {}

    async def tb(ctx):
        for key in ("ss_start", "ss_stop", "ss_shift", "ph_channel", "ph_shift"):
            ctx.set(getattr(dut, key), getattr(cfg, key))
        ctx.set(dut.ss_offset, cfg.ss_offset & 0xFFFF_FFFF)
        if clear_first:
            ctx.set(dut.hist_clear, 1)
            await ctx.tick()
            ctx.set(dut.hist_clear, 0)
            await ctx.tick().repeat(bins + 2)
        for a, g in zip(ann, gaps, strict=True):
            ctx.set(dut.a.valid, 1)
            ctx.set(dut.a.payload, Annotated.const(a))
            await ctx.tick()
            ctx.set(dut.a.valid, 0)
            if g:
                await ctx.tick().repeat(g)
        await ctx.tick().repeat(12)      # latency: 8 cycles (start-stop)
        for sel, key in ((0, "ss"), (1, "ph")):
            ctx.set(dut.hist_sel, sel)
            vals = []
            for b in range(bins):
                ctx.set(dut.hist_addr, b)
                await ctx.tick().repeat(3)   # read port, its register, hist_data register
                vals.append(ctx.get(dut.hist_data))
            out[key] = np.array(vals)
        out["singles"] = np.array([ctx.get(getattr(dut, f"singles_{c}"))
                                   for c in range(channels)])

    sim = make_simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    return out["ss"], out["ph"], out["singles"]


def make_ann(rng, n, channels):
    ann, coarse = [], 100
    for _ in range(n):
        coarse += int(rng.integers(0, 3))
        ann.append({"channel": int(rng.integers(0, channels)), "coarse": coarse,
                    "fine": int(rng.integers(0, 76800)), "phase": int(rng.integers(0, 3840)),
                    "bin": 0})
    # same bin back to back (read-modify-write hazard), and a far stop (dc >= 2**12)
    ann += [{"channel": 0, "coarse": coarse + 1, "fine": 100, "phase": 5, "bin": 0}] * 2
    ann += [{"channel": 1, "coarse": coarse + 1, "fine": 50, "phase": 5, "bin": 0}] * 3
    ann += [{"channel": 1, "coarse": coarse + 9000, "fine": 50, "phase": 5, "bin": 0}]
    return ann


@pytest.mark.parametrize("seed,cfg", [
    (1, HistConfig(ss_start=0, ss_stop=1, ss_offset=-20000, ss_shift=11, ph_channel=32,
                   ph_shift=6)),
    (2, HistConfig(ss_start=2, ss_stop=2, ss_offset=0, ss_shift=12, ph_channel=3,
                   ph_shift=5)),
])
def test_histograms_match_model(seed, cfg):
    rng = np.random.default_rng(seed)
    ann = make_ann(rng, 150, 4)
    gaps = rng.integers(0, 3, len(ann)) * (rng.random(len(ann)) < 0.5)
    gaps[-6:] = 0
    got = rtl_hist(ann, gaps, cfg, 4, 64, clear_first=(seed == 2))
    want = histogram_model(ann, cfg, 4, 64)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert want[0].sum() > 5 and want[1].sum() > 15


def test_hist_errors():
    with pytest.raises(ValueError, match="ss_start must be an int in 0..31"):
        HistConfig(ss_start=40)
    with pytest.raises(ValueError, match="ss_offset must fit in 32 bits"):
        HistConfig(ss_offset=1 << 40)


def test_same_bin_at_every_spacing():
    """Clicks into one bin 1, 2, 3 and 4 cycles apart (each read-modify-write hazard)."""
    cfg = HistConfig(ss_start=0, ss_stop=0, ss_offset=0, ss_shift=16, ph_channel=32,
                     ph_shift=6)
    ann = [{"channel": 0, "coarse": 100 + k, "fine": 10, "phase": 70, "bin": 0}
           for k in range(40)]
    gaps = np.array([0, 1, 2, 3, 0, 0, 1, 0, 2, 0] * 4)
    got = rtl_hist(ann, gaps, cfg, 4, 64)
    want = histogram_model(ann, cfg, 4, 64)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert want[1][1] == 40 and want[0].sum() > 30
