"""CORDIC and the OPLL phase detector (NCO, I/Q, decimator, CORDIC, unwrapper) vs their models."""
import numpy as np
import pytest

from combkey.gateware.dsp.cordic import Cordic, cordic_int, cordic_model
from combkey.gateware.dsp.phase_detector import PhaseDetector, PhaseDetectorModel
from combkey.gateware.stream import make_simulator, stream_get, stream_put


def rtl_cordic(x, y, width, stall_seed=None):
    dut = Cordic(width=width, phase_bits=16, iterations=16)
    sim = make_simulator(dut)
    got = []
    rng = np.random.default_rng(stall_seed)

    async def producer(ctx):
        for a, b in zip(x, y, strict=True):
            await stream_put(ctx, dut.i, {"x": int(a), "y": int(b)})

    async def consumer(ctx):
        for _ in range(len(x)):
            if stall_seed is not None and rng.random() < 0.3:
                await ctx.tick().repeat(int(rng.integers(1, 4)))
            p = await stream_get(ctx, dut.o)
            got.append((p.mag, p.phase))

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return np.array(got).T


def test_cordic_corners_and_random():
    w = 12
    fs = (1 << (w - 1)) - 1
    corners = [(fs, 0), (0, fs), (-fs - 1, 0), (0, -fs - 1), (-fs - 1, -fs - 1), (fs, fs),
               (-fs - 1, fs), (-1, 0), (-1, -1), (1, -1), (0, 0), (-5, 1), (-5, -1)]
    rng = np.random.default_rng(0)
    rnd = rng.integers(-fs - 1, fs + 1, (40, 2))
    xy = np.array(corners + rnd.tolist())
    got = rtl_cordic(xy[:, 0], xy[:, 1], w, stall_seed=1)
    mag, phase = cordic_model(xy[:, 0], xy[:, 1], width=w, phase_bits=16, iterations=16)
    np.testing.assert_array_equal(got[0], mag)
    np.testing.assert_array_equal(got[1], phase)
    # the scalar path used by the co-simulations is the same function
    for (a, b), mm, pp in zip(xy, mag, phase, strict=True):
        assert cordic_int(int(a), int(b)) == (mm, pp)
    # The model is a CORDIC: angle within a few LSB of atan2 away from the origin.
    big = np.hypot(xy[:, 0], xy[:, 1]) > 64
    ref = np.arctan2(xy[big, 1], xy[big, 0]) / (2 * np.pi) * 65536
    err = (phase[big] - ref + 32768) % 65536 - 32768
    assert np.abs(err).max() < 40


def rtl_phase_detector(x, ftw, adc_width, decim_log2, turn_bits, clear_after=()):
    dut = PhaseDetector(adc_width=adc_width, decim_log2=decim_log2, turn_bits=turn_bits)
    sim = make_simulator(dut)
    n_out = len(x) >> decim_log2
    got = []

    async def producer(ctx):
        ctx.set(dut.ftw, ftw)
        for v in x:
            await stream_put(ctx, dut.i, int(v))

    async def consumer(ctx):
        for j in range(n_out):
            p = await stream_get(ctx, dut.o)
            got.append((p.phase, p.mag))
            if j in clear_after:   # a loop reacting to output j: applies to output j + 1
                ctx.set(dut.clear_turns, 1)
                await ctx.tick()
                ctx.set(dut.clear_turns, 0)
        await ctx.tick().repeat(3)
        got.append((ctx.get(dut.turn_overflows), ctx.get(dut.overruns)))

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return np.array(got)


@pytest.mark.parametrize("case", ["random", "beat_multi_turn"])
def test_phase_detector_matches_model(case):
    aw, dl, tb = 12, 2, 2
    rng = np.random.default_rng(5)
    ftw = int(0.23 * 2 ** 32)
    n = 4 * 48
    if case == "random":
        x = rng.integers(-(1 << (aw - 1)), 1 << (aw - 1), n)
        clear_after = ()
    else:
        # beat 2.5 % above the NCO: about 0.1 turn per output, 2 turn bits -> wraps twice,
        # full-scale amplitude to exercise the I/Q saturation.
        k = np.arange(n)
        x = np.round(((1 << (aw - 1)) - 1) * np.cos(2 * np.pi * (0.23 + 0.025) * k))
        # clear the whole turns once, after output 30
        clear_after = (30,)
    got = rtl_phase_detector(x, ftw, aw, dl, tb, clear_after)
    mdl = PhaseDetectorModel(ftw=ftw, adc_width=aw, decim_log2=dl, turn_bits=tb)
    if clear_after:
        c = 4 * (clear_after[0] + 1)
        p1, m1 = mdl.feed(x[:c])
        mdl.clear_turns()
        p2, m2 = mdl.feed(x[c:])
        phase, mag = np.concatenate([p1, p2]), np.concatenate([m1, m2])
    else:
        phase, mag = mdl.feed(x)
    np.testing.assert_array_equal(got[:-1, 0], phase)
    np.testing.assert_array_equal(got[:-1, 1], mag)
    assert got[-1, 0] == mdl.turn_overflows
    assert got[-1, 1] == 0
    if case == "beat_multi_turn":
        assert mdl.turn_overflows >= 1
        # 0.025 cycle/sample offset -> 0.1 turn (6554 LSB) per output, modulo the 2-turn range
        step = (np.diff(phase[:30]) + (1 << 17)) % (1 << 18) - (1 << 17)
        assert abs(step.mean() - 6554) < 200 and step.min() > 0


def test_parameter_errors_name_the_field():
    with pytest.raises(ValueError, match="ftw must be an integer in"):
        PhaseDetectorModel(ftw=-1)
    with pytest.raises(ValueError, match="decim_log2 must be an integer in"):
        PhaseDetectorModel(ftw=0, decim_log2=17)
    with pytest.raises(ValueError, match="width must be an integer in"):
        cordic_model([0], [0], width=2)
