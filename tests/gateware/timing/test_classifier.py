"""Slot clock and slot classifier against their models; MDI patterns; records decode."""
import numpy as np
import pytest

from combkey.gateware.stream import make_simulator, stream_put
from combkey.gateware.timing.classifier import (
    MODE_POL,
    MODE_TF,
    MODE_TIMEBIN,
    RECORD_FIELDS,
    Annotated,
    ClassifierConfig,
    ClickClass,
    SlotClassifier,
    SlotClock,
    classifier_model,
    classify,
    decode_records,
    slot_clock_model,
    slot_config,
)
from combkey.gateware.timing.tagger import Click

U = 38400


def make_clicks(rng, n, period, channels, group=3):
    """Time-ordered clicks in groups (coincidence candidates) with random edges and fines."""
    clicks = []
    slot_edge = int(rng.integers(0, 1 << 32))
    coarse = 1000
    while len(clicks) < n:
        coarse += int(rng.integers(1, 40))
        slot_edge = (slot_edge + int(rng.integers(1, 200))) & 0xFFFF_FFFF
        phase_edge = int(rng.integers(0, period))
        centre = int(rng.integers(0, 2 * U - 2000))
        for _ in range(int(rng.integers(1, group + 1))):
            clicks.append({"channel": int(rng.integers(0, channels)), "flags": 1,
                           "fine": int(np.clip(centre + rng.integers(-900, 900), 0, 2 * U)),
                           "coarse": coarse, "slot_edge": slot_edge, "phase_edge": phase_edge})
    # corner cases: fine == phase_edge, fine == 0, fine at maximum, slot wrap
    clicks += [{"channel": 0, "flags": 1, "fine": 77, "coarse": coarse + 50,
                "slot_edge": 3, "phase_edge": 77},
               {"channel": 1, "flags": 1, "fine": 0, "coarse": coarse + 60,
                "slot_edge": 4, "phase_edge": 0},
               {"channel": 1, "flags": 1, "fine": (1 << 17) - 1, "coarse": coarse + 70,
                "slot_edge": 5, "phase_edge": period - 1}]
    return clicks


def rtl_classifier(clicks, cfg, channels, rd_p, seed, record_depth=8):
    dut = SlotClassifier(channels=channels, record_depth=record_depth)
    rng = np.random.default_rng(seed)
    recs, ann = [], []
    counters = {}

    async def producer(ctx):
        sc = slot_config(cfg.period)
        ctx.set(dut.period, sc["period"])
        ctx.set(dut.recip, sc["recip"])
        ctx.set(dut.mode, cfg.mode)
        ctx.set(dut.window, cfg.window)
        ctx.set(dut.gate0_lo, cfg.gate0[0])
        ctx.set(dut.gate0_hi, cfg.gate0[1])
        ctx.set(dut.gate1_lo, cfg.gate1[0])
        ctx.set(dut.gate1_hi, cfg.gate1[1])
        for c in clicks:
            await stream_put(ctx, dut.i, Click.const(c))
        # flush closes the records open when it arrives: wait until every click is through
        for _ in range(100 * len(clicks)):
            if len(ann) >= len(clicks):
                break
            await ctx.tick()
        ctx.set(dut.flush, 1)
        await ctx.tick()
        ctx.set(dut.flush, 0)
        await ctx.tick().repeat(40 + 3 * len(clicks))
        for name in ("clicks", "out_of_gate", "class_single", "class_psi_minus",
                     "class_psi_plus", "class_multi", *[f"pattern_{p}" for p in range(16)]):
            counters[name] = ctx.get(getattr(dut, name))

    async def monitor(ctx):
        async for _, _, av, ap, rec, rd in ctx.tick().sample(
                dut.a.valid, dut.a.payload.as_value(), dut.records, dut.records_rd):
            if av:
                a = Annotated.from_bits(ap)
                ann.append({"channel": a.channel, "coarse": a.coarse, "fine": a.fine,
                            "phase": a.phase, "bin": a.bin})
            if rd and rec:
                recs.append(rec)
            ctx.set(dut.records_rd, int(rng.random() < rd_p))

    sim = make_simulator(dut)
    sim.add_testbench(producer)
    sim.add_testbench(monitor, background=True)
    sim.run()
    return [dict(zip(RECORD_FIELDS, (int(x) for x in r), strict=True))
            for r in decode_records(np.array(recs, np.uint64))], ann, counters


CASES = [
    ("tf", ClassifierConfig(mode=MODE_TF, gate0=(500, 3000), window=400, period=3840), 16),
    ("timebin", ClassifierConfig(mode=MODE_TIMEBIN, gate0=(100, 1500), gate1=(2000, 3600),
                                 window=600, period=3840), 8),
    ("pol", ClassifierConfig(mode=MODE_POL, gate0=(0, 2600), window=300, period=3072), 8),
]


@pytest.mark.parametrize("name,cfg,channels", CASES, ids=[c[0] for c in CASES])
def test_classifier_matches_model(name, cfg, channels):
    rng = np.random.default_rng(["tf", "timebin", "pol"].index(name))
    clicks = make_clicks(rng, 150, cfg.period, channels, group=5)
    recs, ann, cnt = rtl_classifier(clicks, cfg, channels, rd_p=0.4, seed=1)
    m_recs, m_ann, m_cnt = classifier_model(clicks, cfg)
    assert ann == m_ann
    assert recs == m_recs
    assert cnt == m_cnt
    assert cnt["out_of_gate"] > 0 and len(recs) > 10
    assert any(r["double"] for r in recs)


def test_slot_and_phase_are_exact():
    rng = np.random.default_rng(3)
    for period in (256, 3072, 3840, 38400, 100_000):
        clicks = make_clicks(rng, 300, period, 1, group=1)
        recs, ann, _ = classifier_model(clicks, ClassifierConfig(period=period, gate0=(0, 1 << 24),
                                                                 window=1 << 24))
        want_slot = []
        for c, a in zip(clicks, ann, strict=True):
            t = c["slot_edge"] * period + c["phase_edge"] - c["fine"]
            assert a["phase"] == t % period
            if not want_slot or want_slot[-1] != (t // period) % (1 << 32):
                want_slot.append((t // period) % (1 << 32))
        assert [r["slot"] for r in recs] == want_slot


def test_slot_clock_matches_model():
    sc = slot_config(3072, phase0=1000)      # 12.5 slots per cycle
    dut = SlotClock()
    n = 60
    got = np.zeros((n, 2), np.int64)

    async def tb(ctx):
        for key in ("period", "slots_per_cycle", "period_rem", "recip", "phase0"):
            ctx.set(getattr(dut, key), sc[key])
        for k in range(n):
            ctx.set(dut.start, int(k == 3))
            got[k] = ctx.get(dut.slot_edge), ctx.get(dut.phase_edge)
            await ctx.tick()

    sim = make_simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    slot, phase = slot_clock_model(n, sc, start_at=3)
    np.testing.assert_array_equal(got[:, 0], slot)
    np.testing.assert_array_equal(got[:, 1], phase)
    # exactness: edge k after start at (k-4)*U + phase0 units
    k = np.arange(4, n)
    np.testing.assert_array_equal(slot[4:] * 3072 + phase[4:], (k - 4) * U + 1000)


# Expected BSM outcome of every detector pattern (from the optics, written out by hand).
TIMEBIN_PSI_MINUS = {0b1001, 0b0110}      # D1|e>+D2|l>, D2|e>+D1|l>
TIMEBIN_PSI_PLUS = {0b0101, 0b1010}       # D1|e>+D1|l>, D2|e>+D2|l>
POL_PSI_MINUS = {0b1001, 0b0110}          # D1H+D2V, D1V+D2H
POL_PSI_PLUS = {0b0011, 0b1100}           # D1H+D1V, D2H+D2V


@pytest.mark.parametrize("mode", [MODE_TIMEBIN, MODE_POL, MODE_TF])
def test_every_detector_pattern(mode):
    """Each of the 15 non-empty patterns, built from clicks, classified by RTL and model."""
    period = 3840
    if mode == MODE_POL:
        cfg = ClassifierConfig(mode=mode, gate0=(0, 3840), window=1000, period=period)
    else:
        cfg = ClassifierConfig(mode=mode, gate0=(0, 1900), gate1=(1920, 3840), window=1000,
                               period=period)
    clicks = []
    for p in range(1, 16):
        for b in range(4):
            if not p >> b & 1:
                continue
            if mode == MODE_POL:
                ch, ph = b, 500
            else:
                ch, ph = b & 1, 500 if b < 2 else 2420
            # a click at slot 10*p, phase ph: edge at slot 10*p, phase 3000 -> fine = 3000 - ph
            clicks.append({"channel": ch, "flags": 1, "fine": 3000 - ph, "coarse": p,
                           "slot_edge": 10 * p, "phase_edge": 3000})
    recs, _, cnt = rtl_classifier(clicks, cfg, 4, rd_p=1.0, seed=2)
    m_recs, _, m_cnt = classifier_model(clicks, cfg)
    assert recs == m_recs and cnt == m_cnt
    assert [r["pattern"] for r in recs] == list(range(1, 16))
    for r in recs:
        p = r["pattern"]
        if bin(p).count("1") == 1:
            want = ClickClass.SINGLE
        elif mode == MODE_TIMEBIN:
            want = ClickClass.PSI_MINUS if p in TIMEBIN_PSI_MINUS else \
                ClickClass.PSI_PLUS if p in TIMEBIN_PSI_PLUS else ClickClass.MULTI
        elif mode == MODE_POL:
            want = ClickClass.PSI_MINUS if p in POL_PSI_MINUS else \
                ClickClass.PSI_PLUS if p in POL_PSI_PLUS else ClickClass.MULTI
        else:
            want = ClickClass.MULTI
        assert r["cls"] == want, (mode, p)
        assert r["double"] == (bin(p).count("1") >= 2)


def test_wide_coincidence_is_multi():
    assert classify(0b1001, MODE_TIMEBIN, wide=1) == ClickClass.MULTI
    assert classify(0b1001, MODE_TIMEBIN, wide=0) == ClickClass.PSI_MINUS


@pytest.mark.parametrize("kw,msg", [
    ({"mode": 3}, "mode must be 0 \\(TF\\)"),
    ({"gate0": (-1, 5)}, "gate0 must be a \\(lo, hi\\) pair"),
])
def test_config_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ClassifierConfig(**kw)


def test_slot_config_errors():
    with pytest.raises(ValueError, match="period_units must be an int in"):
        slot_config(100)
    with pytest.raises(ValueError, match="phase0 must be in"):
        slot_config(3840, phase0=3840)
