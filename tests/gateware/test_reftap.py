"""RefTap: reference events from records, hardware against reftap_model."""
import numpy as np
import pytest

from combkey.gateware.reftap import TAP_DEPTH, RefTap, reftap_model
from combkey.gateware.stream import make_simulator
from combkey.gateware.timing.classifier import MODE_TF, MODE_TIMEBIN, RecordWord


def random_records(rng, n, *, first, period, lanes=2):
    """Increasing slots around ``first`` (some before it, some periods empty)."""
    slot = max(0, first - 3 * period)
    recs = []
    for _ in range(n):
        slot += int(rng.choice([0, 1, 1, 2, 5, period, 3 * period + 1]))
        recs.append({"valid": 1, "slot": slot & 0xFFFFFFFF, "lane": int(rng.integers(0, lanes)),
                     "pattern": int(rng.integers(1, 16)),
                     "mode": MODE_TF if rng.random() < 0.9 else MODE_TIMEBIN})
    return recs


def encode(rec):
    full = {f: 0 for f in ("valid", "slot", "lane", "pattern", "cls", "double", "wide",
                           "repeat", "clicks", "mode", "reserved")}
    full.update(rec)
    return RecordWord.const(full).as_bits()


def run(recs, cfg, *, gap_p=0.5, ready_p=0.7, seed=0, never_ready=False):
    rng = np.random.default_rng(seed)
    dut = RefTap()
    got = []
    counters = {}

    async def producer(ctx):
        for name in ("lane", "first", "n_q", "n_r", "quarter"):
            ctx.set(getattr(dut, name), cfg[name])
        ctx.set(dut.enable, 1)
        await ctx.tick().repeat(2)
        for rec in recs:
            while rng.random() < gap_p:
                ctx.set(dut.rec_valid, 0)
                await ctx.tick()
            ctx.set(dut.rec, encode(rec))
            ctx.set(dut.rec_valid, 1)
            await ctx.tick()
        ctx.set(dut.rec_valid, 0)
        await ctx.tick().repeat(400)
        counters["drops"] = ctx.get(dut.drops)
        counters["events"] = ctx.get(dut.events)

    async def consumer(ctx):
        while True:
            ready = 0 if never_ready else int(rng.random() < ready_p)
            ctx.set(dut.ev.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.ev.valid, dut.ev.payload)
            if valid and ready:
                got.append((payload.quad, payload.d0, payload.d1, payload.last))

    sim = make_simulator(dut)
    sim.add_testbench(producer)
    sim.add_testbench(consumer, background=True)
    sim.run()
    return got, counters


@pytest.mark.parametrize("n_q,n_r,quarter,first", [(6, 4, 0b0100, 20), (3, 1, 0b1101, 0),
                                                   (0, 5, 0b0110, 7), (8, 8, 0b1111, 100)])
def test_events_match_model(n_q, n_r, quarter, first):
    cfg = {"enable": 1, "lane": 1, "first": first, "n_q": n_q, "n_r": n_r, "quarter": quarter}
    rng = np.random.default_rng(n_q * 31 + quarter)
    recs = random_records(rng, 300, first=first, period=n_q + n_r)
    got, cnt = run(recs, cfg, seed=quarter)
    want = reftap_model(recs, cfg)
    assert cnt["drops"] == 0
    assert got == want
    assert cnt["events"] == len(want)
    assert any(e[3] for e in want) and any(e[0] for e in want) and any(not e[3] for e in want)


def test_full_fifo_drops_are_counted():
    cfg = {"enable": 1, "lane": 0, "first": 0, "n_q": 2, "n_r": 2, "quarter": 0}
    recs = [{"valid": 1, "slot": 2 + 4 * i, "lane": 0, "pattern": 1, "mode": MODE_TF}
            for i in range(60)]
    got, cnt = run(recs, cfg, gap_p=0.0, never_ready=True)
    # One record is being answered (its event waits), TAP_DEPTH wait in the FIFO.
    assert got == [] and cnt["drops"] == 60 - TAP_DEPTH - 1


def test_swap_and_quad_rule():
    # Four reference slots of one period with k = 0, 1, 2, 3 (start 0, step 1): D0 clicks in
    # all four; k >= 2 reports it as D1.
    cfg = {"enable": 1, "lane": 0, "first": 0, "n_q": 1, "n_r": 4, "quarter": 0b0100}
    recs = [{"valid": 1, "slot": s, "lane": 0, "pattern": 0b0001, "mode": MODE_TF}
            for s in (1, 2, 3, 4, 5)]
    want = [(0, 1, 0, 0), (1, 1, 0, 0), (0, 0, 1, 0), (1, 0, 1, 0), (0, 0, 0, 1)]
    assert reftap_model(recs, cfg) == want
    got, _ = run(recs, cfg)
    assert got == want                # slot 5 starts the next period: marker, quantum slot
    # Slot 16 is in the period starting at 15: markers close [5, 10) and the empty [10, 15),
    # then its reference slot r = 0 (k = 0) reports D1.
    more = recs + [{"valid": 1, "slot": 16, "lane": 0, "pattern": 0b0010, "mode": MODE_TF}]
    assert reftap_model(more, cfg) == want + [(0, 0, 0, 1), (0, 0, 0, 1), (0, 0, 1, 0)]
    got2, _ = run(more, cfg)
    assert got2 == reftap_model(more, cfg)
