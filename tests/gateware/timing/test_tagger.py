"""Tagger (merge, calibration table, tag FIFO, loss counters) against its cycle model."""
import numpy as np
import pytest

from combkey.gateware.stream import make_simulator
from combkey.gateware.timing.tagger import (
    COARSE_BITS,
    FLAG_LOST,
    FLAG_RAW,
    Click,
    Tagger,
    TaggerConfig,
    decode_tags,
    encode_tag,
    tagger_model,
    timestamps,
    unwrap_coarse,
)
from combkey.gateware.timing.tdc import UNITS_PER_CYCLE


def rtl_tagger(cfg, hit, code, slot, phase, o_ready, tags_rd, raw=0, tag_enable=1,
               cal_writes=()):
    n = len(hit)
    dut = Tagger(cfg.channels, cfg.code_bits, cfg.batch_depth, cfg.tag_depth, cfg.coarse_init,
                 cfg.cal_init)
    out = {k: np.zeros(n, np.int64) for k in ("o_valid", "tag_level", "tagged")}
    out["o_payload"] = np.zeros(n, object)
    out["tags"] = np.zeros(n, np.uint64)
    out["lost"] = np.zeros((n, cfg.channels), np.int64)

    async def tb(ctx):
        ctx.set(dut.raw, raw)
        ctx.set(dut.tag_enable, tag_enable)
        for addr, value in cal_writes:
            ctx.set(dut.cal_addr, addr)
            ctx.set(dut.cal_data, value)
            ctx.set(dut.cal_data_stb, 1)
            await ctx.tick()
        ctx.set(dut.cal_data_stb, 0)
        for k in range(n):
            ctx.set(dut.hit, int(sum(int(b) << i for i, b in enumerate(hit[k]))))
            for c in range(cfg.channels):
                ctx.set(dut.code[c], int(code[k][c]))
            ctx.set(dut.slot_edge, int(slot[k]))
            ctx.set(dut.phase_edge, int(phase[k]))
            ctx.set(dut.o.ready, int(o_ready[k]))
            ctx.set(dut.tags_rd, int(tags_rd[k]))
            await ctx.delay(1e-9)
            v = ctx.get(dut.o.valid)
            out["o_valid"][k] = v
            out["o_payload"][k] = ctx.get(dut.o.payload.as_value()) if v else 0
            out["tags"][k] = ctx.get(dut.tags)
            out["tag_level"][k] = ctx.get(dut.tag_level)
            out["tagged"][k] = ctx.get(dut.tagged)
            out["lost"][k] = [ctx.get(getattr(dut, f"lost_{c}")) for c in range(cfg.channels)]
            await ctx.tick()

    sim = make_simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    return out


def stimulus(cfg, n, rate, rng):
    hit = rng.random((n, cfg.channels)) < rate
    hit[5] = True                      # every channel in the same cycle
    hit[6] = True                      # and again in the next one
    hit[n // 2: n // 2 + 3] = True
    code = rng.integers(0, 1 << cfg.code_bits, (n, cfg.channels)) * hit
    slot = rng.integers(0, 1 << 32, n)
    phase = rng.integers(0, 1 << 24, n)
    return hit, code, slot, phase


def compare(cfg, n, rate, seed, ready_p, rd_p, raw=0, tag_enable=1):
    rng = np.random.default_rng(seed)
    hit, code, slot, phase = stimulus(cfg, n, rate, rng)
    o_ready = rng.random(n) < ready_p
    tags_rd = rng.random(n) < rd_p
    got = rtl_tagger(cfg, hit, code, slot, phase, o_ready, tags_rd, raw, tag_enable)
    want = tagger_model(hit, code, slot, phase, o_ready, tags_rd, cfg, raw, tag_enable)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    return hit, want, o_ready, tags_rd


def test_tagger_matches_model_unthrottled_with_coarse_wrap():
    rng = np.random.default_rng(1)
    table = tuple(rng.integers(0, 1 << 17, 16 << 5))
    cfg = TaggerConfig(channels=16, code_bits=5, batch_depth=4, tag_depth=16,
                       coarse_init=(1 << COARSE_BITS) - 40, cal_init=table)
    hit, want, _, _ = compare(cfg, 160, 0.04, 2, 1.0, 1.0)
    fired = want["o_valid"].sum()
    assert fired + want["lost"][-1].sum() <= hit.sum()
    assert fired > 50
    coarse = [Click.from_bits(p).coarse for p, v in zip(want["o_payload"], want["o_valid"],
                                                        strict=True) if v]
    assert min(coarse) < 100 < (1 << COARSE_BITS) - 100 < max(coarse)   # it wrapped


def test_tagger_matches_model_throttled_losses_counted():
    cfg = TaggerConfig(channels=4, code_bits=4, batch_depth=3, tag_depth=4)
    hit, want, o_ready, _ = compare(cfg, 400, 0.3, 3, 0.6, 0.2)
    lost = want["lost"][-1].sum()
    assert lost > 0
    # every hit is either delivered, still in flight, or counted lost
    in_flight = hit.sum() - want["tagged"][-1] - lost
    assert 0 <= in_flight <= cfg.batch_depth * cfg.channels + 2


def test_tagger_raw_mode_and_tag_disable():
    cfg = TaggerConfig(channels=3, code_bits=4, batch_depth=4, tag_depth=8)
    _, want, _, _ = compare(cfg, 120, 0.2, 4, 0.8, 0.5, raw=1, tag_enable=0)
    assert want["tag_level"].max() == 0
    flags = [Click.from_bits(p).flags for p, v in zip(want["o_payload"], want["o_valid"],
                                                      strict=True) if v]
    assert all(f & FLAG_RAW for f in flags)


def test_cal_table_written_through_ports():
    cfg = TaggerConfig(channels=2, code_bits=3, batch_depth=4, tag_depth=8)
    n = 12
    hit = np.zeros((n, 2), bool)
    hit[2, 1] = True
    code = np.zeros((n, 2), np.int64)
    code[2, 1] = 5
    zeros = np.zeros(n, np.int64)
    got = rtl_tagger(cfg, hit, code, zeros, zeros, np.ones(n), np.zeros(n),
                     cal_writes=[((1 << 3) | 5, 12345), (5, 777)])
    p = [Click.from_bits(x) for x, v in zip(got["o_payload"], got["o_valid"], strict=True) if v]
    assert [(c.channel, c.fine) for c in p] == [(1, 12345)]


def test_lost_flag_on_next_tag_and_decode():
    cfg = TaggerConfig(channels=2, code_bits=3, batch_depth=2, tag_depth=2)
    n = 40
    hit = np.zeros((n, 2), bool)
    hit[1:8, :] = True
    hit[30, 0] = True
    code = np.full((n, 2), 3) * hit
    z = np.zeros(n)
    want = tagger_model(hit, code, z, z, np.ones(n), np.ones(n), cfg)
    assert want["lost"][-1].sum() > 0
    words = [w for w in want["tags"] if w]
    assert not words or decode_tags(np.array(words, np.uint64)).size == len(words)
    clicks = [Click.from_bits(p) for p, v in zip(want["o_payload"], want["o_valid"],
                                                 strict=True) if v]
    for c in range(2):
        if want["lost"][-1][c]:
            assert any(k.channel == c and k.flags & FLAG_LOST for k in clicks)
    assert clicks[-1].channel == 0 and not clicks[-1].flags & FLAG_LOST


def test_decode_and_timestamps_roundtrip():
    rng = np.random.default_rng(9)
    ch = rng.integers(0, 32, 50)
    fine = rng.integers(0, 1 << 17, 50)
    coarse = (np.cumsum(rng.integers(0, 1 << 36, 50)) + (1 << 39) - (1 << 38)) % (1 << 39)
    words = np.array([encode_tag(int(c), 1, int(f), int(k))
                      for c, f, k in zip(ch, fine, coarse, strict=True)] + [0], np.uint64)
    tags = decode_tags(words)
    np.testing.assert_array_equal(tags["channel"], ch)
    np.testing.assert_array_equal(tags["coarse"], coarse)
    t = timestamps(tags)
    assert (np.diff(unwrap_coarse(coarse)) >= 0).all()
    np.testing.assert_array_equal(t, unwrap_coarse(coarse) * UNITS_PER_CYCLE - fine)


@pytest.mark.parametrize("kw,msg", [
    ({"channels": 40}, "channels must be an int in 1..32"),
    ({"batch_depth": 1}, "batch_depth must be an int >= 2"),
    ({"cal_init": (1, 2)}, "cal_init must have channels << code_bits"),
])
def test_config_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TaggerConfig(**kw)
