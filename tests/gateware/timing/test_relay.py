"""End to end on the RTL: detector pulses -> delay lines -> RelayTagger -> tags and records read
over the register bus, against the chain of models (tdc_model, slot clock, classifier_model)."""
import numpy as np

from combkey.gateware.stream import make_simulator
from combkey.gateware.timing.classifier import ClassifierConfig, classifier_model, slot_config
from combkey.gateware.timing.relay import RelayTagger
from combkey.gateware.timing.tagger import decode_tags, encode_tag
from combkey.gateware.timing.tdc import DelayLineConfig, linear_table, tdc_model
from combkey.sim.detector import DetectorConfig, detect, pulses_to_therm

CH, LINES, TAPS = 4, 2, 16
DL = DelayLineConfig(lines=LINES, taps=TAPS, tap_mean_ps=400.0, tap_spread=0.3,
                     clock_hz=200e6, seed=9)
PERIOD = 19200            # two slots per 5 ns clock cycle


def test_relay_end_to_end():
    rng = np.random.default_rng(3)
    n_run = 1500
    T = DL.period_ps
    therm = np.zeros((n_run, CH, LINES * TAPS), np.uint8)
    det = DetectorConfig(efficiency=0.9, dark_rate=1e5, dead_time_ps=25_000, jitter_ps=30)
    for c in range(CH):
        slots = np.nonzero(rng.random(2 * n_run - 20) < 0.08)[0] + 10
        photons = slots * (T / 2) + 600.0 + (c & 1) * 50.0
        d = detect(photons, (n_run - 30) * T, det, rng)
        therm[:, c] = pulses_to_therm(d.times, DL, n_run, channel=c)
    table = linear_table(LINES * TAPS + 1, DL.tap_mean_ps / LINES, DL.clock_hz)
    cb = 6
    dut = RelayTagger(CH, LINES, TAPS, bins=64, tag_depth=2048, record_depth=1024)
    regmap = dut.regmap
    bus = dut.bus
    t = dut.timing
    trace = {"therm": [], "slot": [], "phase": []}
    state = {"go": False}
    words = [[int("".join(str(b) for b in therm[k, c][::-1]), 2) for c in range(CH)]
             for k in range(n_run)]

    async def driver(ctx):
        k = 0
        while True:
            row = words[k - state["start"]] if state["go"] and k - state["start"] < n_run \
                else [0] * CH
            for c in range(CH):
                ctx.set(dut.therm[c], row[c])
            trace["therm"].append(row)
            trace["slot"].append(ctx.get(t.slot.slot_edge))
            trace["phase"].append(ctx.get(t.slot.phase_edge))
            await ctx.tick()
            k += 1
            state["k"] = k

    async def write(ctx, name, value):
        ctx.set(bus.addr, regmap.address(name))
        ctx.set(bus.w_data, value)
        ctx.set(bus.w_en, 1)
        await ctx.tick()
        ctx.set(bus.w_en, 0)

    async def read(ctx, name, word=0):
        ctx.set(bus.addr, regmap.address(name) + word)
        ctx.set(bus.r_en, 1)
        await ctx.tick()
        ctx.set(bus.r_en, 0)
        return ctx.get(bus.r_data)

    tags, recs, lost = [], [], []

    async def host(ctx):
        for c in range(CH):
            for code in range(LINES * TAPS + 1):
                await write(ctx, "tagger.cal_addr", (c << cb) | code)
                await write(ctx, "tagger.cal_data", int(table[code]))
        sc = slot_config(PERIOD)
        for key in ("period", "slots_per_cycle", "period_rem", "recip", "phase0"):
            await write(ctx, f"slot.{key}", sc[key])
        await write(ctx, "slot.start", 1)
        for key, value in (("mode", 0), ("gate0_lo", 0), ("gate0_hi", 12000),
                           ("window", 3000)):
            await write(ctx, f"cls.{key}", value)
        state["start"] = state["k"] + 1
        state["go"] = True
        await ctx.tick().repeat(n_run + 100)
        await write(ctx, "cls.flush", 1)
        await ctx.tick().repeat(20)
        while await read(ctx, "tagger.tag_level"):
            lo = await read(ctx, "tagger.tags")
            hi = await read(ctx, "tagger.tags", 1)
            tags.append(lo | hi << 32)
        while await read(ctx, "cls.record_level"):
            lo = await read(ctx, "cls.records")
            hi = await read(ctx, "cls.records", 1)
            recs.append(lo | hi << 32)
        for c in range(CH):
            lost.append(await read(ctx, f"tagger.lost_{c}"))
            lost.append(await read(ctx, f"tdc.dead_{c}"))

    sim = make_simulator(dut)
    sim.add_testbench(driver, background=True)
    sim.add_testbench(host)
    sim.run()

    # Model chain over exactly what the RTL saw.
    n = len(trace["therm"])
    th = np.zeros((n, CH, LINES * TAPS), np.uint8)
    for k, row in enumerate(trace["therm"]):
        for c in range(CH):
            th[k, c] = [(row[c] >> j) & 1 for j in range(LINES * TAPS)]
    hit, code, dead = tdc_model(th, LINES, TAPS, holdoff=2)
    clicks, want_tags = [], []
    for k in np.nonzero(hit.any(axis=1))[0]:
        for c in np.nonzero(hit[k])[0]:
            fine = int(table[code[k, c]])
            clicks.append({"channel": int(c), "flags": 1, "fine": fine, "coarse": int(k),
                           "slot_edge": trace["slot"][k], "phase_edge": trace["phase"][k]})
            want_tags.append(encode_tag(int(c), 1, fine, int(k)))
    assert sum(lost) == 0
    assert tags == want_tags
    assert len(tags) > 100
    cfg = ClassifierConfig(mode=0, gate0=(0, 12000), window=3000, period=PERIOD)
    m_recs, _, _ = classifier_model(clicks, cfg)
    from combkey.gateware.timing.classifier import RECORD_FIELDS, decode_records
    got = [dict(zip(RECORD_FIELDS, (int(x) for x in r), strict=True))
           for r in decode_records(np.array(recs, np.uint64))]
    assert got == m_recs
    assert len(got) > 50 and any(r["double"] for r in got)
    assert decode_tags(np.array(tags, np.uint64)).size == len(tags)
