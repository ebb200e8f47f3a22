"""TDC encoder against its model; delay-line model and code-density calibration; ECP5 chains."""
import re

import numpy as np
import pytest

from combkey.gateware.stream import make_simulator
from combkey.gateware.timing.tdc import (
    SYNTH_PLATFORM,
    TDC,
    UNITS_PER_CYCLE,
    DelayLineConfig,
    DelayLineModel,
    ECP5DelayLine,
    check_tdc_params,
    code_density_table,
    delay_line_placement,
    dnl_inl,
    linear_table,
    popcount_latency,
    tdc_model,
    tdc_placement,
)

SMALL = DelayLineConfig(lines=2, taps=16, tap_mean_ps=400.0, tap_spread=0.3, clock_hz=200e6,
                        bubble_prob=0.2, seed=3)


def rtl_tdc(therm, lines, taps, holdoff, dl_enable=None):
    n, ch, _ = therm.shape
    dut = TDC(channels=ch, lines=lines, taps=taps)
    hit = np.zeros((n, ch), np.int64)
    code = np.zeros((n, ch), np.int64)
    dead = np.zeros((n, ch), np.int64)
    words = [[int("".join(str(b) for b in row[::-1]), 2) for row in cyc] for cyc in therm]

    async def tb(ctx):
        ctx.set(dut.holdoff, holdoff)
        for k in range(n):
            if dl_enable is not None:
                ctx.set(dut.dl_enable, int(dl_enable[k]))
            for c in range(ch):
                ctx.set(dut.therm[c], words[k][c])
            await ctx.delay(1e-9)
            hit[k] = [(ctx.get(dut.hit) >> c) & 1 for c in range(ch)]
            code[k] = [ctx.get(dut.code[c]) for c in range(ch)]
            dead[k] = [ctx.get(getattr(dut, f"dead_{c}")) for c in range(ch)]
            await ctx.tick()

    sim = make_simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    return hit, code, dead


def event_therm(cfg, channels, n_cycles, rate_per_cycle, rng, width_cycles=1.5):
    """Random pulse trains per channel plus forced simultaneous and clock-edge events."""
    T = cfg.period_ps
    out = np.zeros((n_cycles, channels, cfg.lines * cfg.taps), np.uint8)
    common = np.array([10.3, 40.0, 40.0 + 1e-3]) * T  # simultaneous on all channels
    for c in range(channels):
        model = DelayLineModel(cfg, c)
        t, rises = 0.0, []
        while True:
            t += rng.exponential(T / rate_per_cycle) + 3 * T
            if t > (n_cycles - 10) * T:
                break
            rises.append(t)
        edge = [k * T - model.lead_ps() for k in (20, 60)] + [k * T for k in (25, 70)]
        rises = np.sort(np.concatenate([rises, common[:1], edge]))
        keep = np.concatenate([[True], np.diff(rises) > 2.2 * T])
        out[:, c] = model.sample(rises[keep], width_cycles * T, n_cycles)
    return out


@pytest.mark.parametrize("holdoff,channels,cycles", [(0, 3, 300), (3, 3, 300), (2, 16, 160)])
def test_tdc_matches_model_random_trains(holdoff, channels, cycles):
    rng = np.random.default_rng(5)
    therm = event_therm(SMALL, channels, cycles, 0.15, rng)
    got = rtl_tdc(therm, SMALL.lines, SMALL.taps, holdoff)
    want = tdc_model(therm, SMALL.lines, SMALL.taps, holdoff)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert want[0].sum() > 15
    if holdoff:
        assert want[2][-1].sum() > 0


def test_dl_enable_gates_hits_like_the_model():
    """``dl_enable`` toggled at random (and held low across pulses, and raised while a line is
    high): the hardware equals the model every cycle; no hit is tagged while it is 0."""
    rng = np.random.default_rng(11)
    n = 400
    therm = event_therm(SMALL, 3, n, 0.2, rng, width_cycles=4.5)
    en = np.ones(n, np.uint8)
    for start in rng.integers(0, n - 30, 8):
        en[start:start + rng.integers(1, 25)] = 0
    got = rtl_tdc(therm, SMALL.lines, SMALL.taps, 1, dl_enable=en)
    want = tdc_model(therm, SMALL.lines, SMALL.taps, 1, dl_enable=en)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    lat = 2 + popcount_latency(SMALL.lines * SMALL.taps)     # TDC.latency
    off = np.nonzero(en == 0)[0]
    off = off[off + lat < n]
    assert want[0][off + lat].sum() == 0          # nothing detected from disabled cycles
    full = tdc_model(therm, SMALL.lines, SMALL.taps, 1)[0]
    assert full[off + lat].sum() > 0               # ... where pulses were there to detect
    with pytest.raises(ValueError, match=r"dl_enable must have one value per cycle \(400\)"):
        tdc_model(therm, SMALL.lines, SMALL.taps, 1, dl_enable=en[:-1])


def test_bubbles_do_not_change_code():
    cfg = DelayLineConfig(lines=2, taps=32, tap_mean_ps=200.0, clock_hz=200e6, bubble_prob=1.0)
    m = DelayLineModel(cfg)
    rise = np.array([1234.5, 30_000.0])
    bits = m.sample(rise, 6000.0, 12)
    clean = DelayLineModel(dataclassesreplace(cfg, bubble_prob=0.0)).sample(rise, 6000.0, 12)
    assert (bits != clean).any()
    np.testing.assert_array_equal(bits.sum(axis=1), clean.sum(axis=1))


def dataclassesreplace(cfg, **kw):
    import dataclasses
    return dataclasses.replace(cfg, **kw)


def test_code_density_recovers_bins():
    cfg = DelayLineConfig(seed=11)
    m = DelayLineModel(cfg)
    rng = np.random.default_rng(2)
    tau = m.lead_ps() + rng.random(400_000) * cfg.period_ps
    codes = m.code(tau)
    hist = np.bincount(codes, minlength=cfg.lines * cfg.taps + 1)
    table = code_density_table(hist)
    tau_test = m.lead_ps() + rng.random(50_000) * cfg.period_ps
    unit = cfg.period_ps / UNITS_PER_CYCLE
    err_cal = table[m.code(tau_test)] * unit - (tau_test - m.lead_ps())
    lin = linear_table(len(hist), cfg.tap_mean_ps / cfg.lines, cfg.clock_hz)
    err_lin = lin[m.code(tau_test)] * unit - (tau_test - m.lead_ps())
    rms_cal = np.std(err_cal)
    rms_lin = np.std(err_lin)
    dnl, inl = dnl_inl(hist)
    print(f"\nRMS before cal {rms_lin:.2f} ps, after {rms_cal:.2f} ps; "
          f"DNL max {abs(dnl).max():.2f} LSB, INL max {abs(inl).max():.2f} LSB")
    assert rms_cal < 15.0
    assert rms_cal < rms_lin


@pytest.mark.parametrize("hist,msg", [
    (np.zeros(8, np.int64), "hist must contain at least one hit"),
    (np.array([1.0, 2.0]), "hist must hold integer counts"),
    (np.array([[1, 2]]), "hist must be a 1-D array"),
    (np.array([3, -1, 2]), "hist must be non-negative"),
])
def test_code_density_rejects_bad_hist(hist, msg):
    with pytest.raises(ValueError, match=msg):
        code_density_table(hist)


def test_bad_parameters_named():
    with pytest.raises(ValueError, match="channels must be at most 32"):
        check_tdc_params(33, 4, 128)
    with pytest.raises(ValueError, match="taps must be a positive int"):
        DelayLineConfig(taps=0)
    with pytest.raises(ValueError, match="must cover a clock period"):
        DelayLineConfig(taps=10)


# ---------------------------------------------------------------- ECP5 chains and placement


def test_delay_line_placement_runs_along_a_row():
    bels = delay_line_placement((10, 20), 6, slice_index=2)
    assert bels == ["X10/Y20/SLICEC", "X10/Y20/SLICED", "X11/Y20/SLICEA", "X11/Y20/SLICEB",
                    "X11/Y20/SLICEC", "X11/Y20/SLICED"]
    pl = tdc_placement([(2, 5), (2, 30)], lines=2, taps=6, row_step=3)
    assert set(pl) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert pl[(0, 1)][0] == "X2/Y8/SLICEA" and pl[(1, 0)][-1] == "X2/Y30/SLICED"
    assert all(len(v) == (6 + 2) // 2 for v in pl.values())


@pytest.mark.parametrize("kw,msg", [
    ({"start": (-1, 3), "cells": 4}, "start must be an \\(x, y\\) pair"),
    ({"start": (1, 3), "cells": 4, "slice_index": 4}, "slice_index must be 0..3"),
    ({"start": (120, 3), "cells": 40, "tiles": (126, 95)}, "leaves the die"),
])
def test_delay_line_placement_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        delay_line_placement(**kw)


def test_delay_line_placement_on_netlist_cells():
    """Every CCU2C of the emitted netlist carries its BEL; the chain is linked COUT -> CIN."""
    from amaranth.back import rtlil
    bels = delay_line_placement((30, 12), 5)
    text = rtlil.convert(ECP5DelayLine(8, placement=bels), name="dl", platform=SYNTH_PLATFORM)
    cells = re.findall(r'((?:  attribute \\\S+ [^\n]*\n)*)  cell \\CCU2C \\(cc\d+)\n(.*?)  end',
                       text, re.S)
    assert [c[1] for c in cells] == [f"cc{k}" for k in range(5)]
    for k, (attrs, _, body) in enumerate(cells):
        assert f'attribute \\BEL "{bels[k]}"' in attrs
        assert "attribute \\keep 1" in attrs
        if k:
            assert f"connect \\CIN \\co{k - 1}" in body
    plain = rtlil.convert(ECP5DelayLine(8), name="dl", platform=SYNTH_PLATFORM)
    assert plain.count("cell \\CCU2C ") == 5 and "\\BEL" not in plain
    assert "CCU2C" not in rtlil.convert(ECP5DelayLine(8), name="dl")    # pysim form
    with pytest.raises(ValueError, match="placement must be 5 BEL names"):
        ECP5DelayLine(8, placement=bels[:4])


def test_relay_placement_reaches_every_chain():
    from amaranth.back import rtlil

    from combkey.gateware.timing.relay import RelayTagger
    pl = tdc_placement([(4, 10), (4, 40)], lines=2, taps=4)
    text = rtlil.convert(RelayTagger(2, 2, 4, bins=4, ecp5=True, placement=pl), name="top",
                         platform=SYNTH_PLATFORM)
    got = set(re.findall(r'attribute \\BEL "([^"]+)"', text))
    assert got == {b for v in pl.values() for b in v}
    with pytest.raises(ValueError, match="placement must have BEL lists for every"):
        RelayTagger(2, 2, 4, ecp5=True, placement={(0, 0): pl[(0, 0)]})


def test_saturated_fraction_measures_the_uncovered_period():
    """A model line covering the period never reaches its last tap; histograms of a line that
    covers only part of the period pile the rest at the top code."""
    from combkey.gateware.timing.tdc import saturated_fraction
    m = DelayLineModel(SMALL)
    rng = np.random.default_rng(2)
    n_codes = SMALL.lines * SMALL.taps + 1
    codes = m.code(m.lead_ps() + rng.random(50_000) * SMALL.period_ps)
    assert saturated_fraction(np.bincount(codes, minlength=n_codes)) == 0.0
    # The same line at a clock of 1.25 periods: hits uniform over the longer period, the line
    # (lead + arrivals of at most one old period) covers about 1 / 1.25 of it.
    longer = 1.25 * SMALL.period_ps
    tau = m.lead_ps() + rng.random(50_000) * longer
    codes = np.minimum(m.code(tau), n_codes - 1)
    frac = saturated_fraction(np.bincount(codes, minlength=n_codes))
    covered = (m.arrival.max() - m.lead_ps()) / longer
    assert abs(frac - (1 - covered)) < 0.02
    with pytest.raises(ValueError, match=r"hist must be a 1-d histogram of at least 2 codes"):
        saturated_fraction(np.zeros(5))
