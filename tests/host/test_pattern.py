"""Host pattern API: configuration, register writes, regeneration (bit-exact), statistics."""
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from combkey.gateware.pattern.generator import CLS_REF, SLOT_DTYPE, PatternRegs
from combkey.pattern import PatternConfig, model_regenerate, regenerate, regenerate_slots

sys.path.insert(0, str(Path(__file__).parents[1] / "gateware"))
from pattern_harness import rtl_run  # noqa: E402

KEY = bytes.fromhex("0F62B5085BAE0154A7FA")
SEED002 = dict(protocol="mdi", p_z=0.754, p_y=0.036, p_x=0.188, p_o=0.022)


def _eq(a, b):
    assert a.dtype == SLOT_DTYPE and b.dtype == SLOT_DTYPE
    for f in SLOT_DTYPE.names:
        np.testing.assert_array_equal(a[f], b[f], err_msg=f)


@pytest.mark.parametrize("cfg", [
    PatternConfig(lanes=4, frame_len=4 * 300, n_q=24, n_r=8, ref_phase_start=3,
                  ref_phase_step=5, iv_tag=0xABCDEF1),
    PatternConfig(lanes=1, frame_len=2000, n_q=2000, prob_bits=24, phase_slices=256),
    PatternConfig(lanes=8, frame_len=8 * 200, n_q=8, n_r=8, iv_tag=3, **SEED002),
    PatternConfig(lanes=2, frame_len=600, n_q=600, phase_slices=1, **SEED002),
], ids=["sns-l4-ref", "sns-l1-r24-m256", "mdi-l8-ref", "mdi-l2-m1"])
def test_regenerate_equals_gateware_model(cfg):
    a = regenerate(cfg, KEY, 777, 5000)
    np.testing.assert_array_equal(a["slot"], np.arange(777, 5777, dtype=np.uint64))
    _eq(a, model_regenerate(cfg, KEY, a["slot"]))
    # arbitrary slots, unsorted, repeated, far away: each frame regenerated on its own
    rng = np.random.default_rng(1)
    slots = np.concatenate([rng.integers(0, 1 << 45, 500), rng.integers(0, 5000, 500),
                            [0, 0, 1 << 45]]).astype(np.uint64)
    rng.shuffle(slots)
    b = regenerate_slots(cfg, KEY, slots)
    np.testing.assert_array_equal(b["slot"], slots)
    _eq(b, model_regenerate(cfg, KEY, slots))
    inside = slots[(slots >= 777) & (slots < 5777)]
    _eq(regenerate_slots(cfg, KEY, inside), a[(inside - 777).astype(np.int64)])


def test_regenerate_equals_simulated_hardware():
    """The host regenerates exactly the stream a simulated transmitter emitted."""
    cfg = PatternConfig(lanes=2, frame_len=2 * 100, n_q=10, n_r=4, ref_phase_step=1,
                        iv_tag=99, frame0=123456, **SEED002)
    hw, _ = rtl_run(cfg.params(), cfg.regs(), int.from_bytes(
        bytes(int(f"{x:08b}"[::-1], 2) for x in KEY), "big"), 2000)
    host = regenerate(cfg, KEY, int(hw["slot"][0]), len(hw))
    _eq(hw, host)
    assert int(hw["slot"][0]) == 123456 * 200


def test_register_values_and_realised():
    cfg = PatternConfig(p_z=0.8, eps=0.25, p_x0=0.5, p_x1=0.3, p_x2=0.2, n_q=64, n_r=16)
    writes = cfg.register_values(key=KEY)
    names = [n for n, _ in writes]
    assert names[-1] == "ctrl" and dict(writes)["ctrl"] == 1
    assert dict(writes)["thr0"] == round(0.8 * 65536) and dict(writes)["thr1"] == 16384
    assert names.count("im_lut") == 16 and names.count("pm_lut") == 32
    assert dict(writes)["key_hi"] << 64 | dict(writes)["key_lo"] == int.from_bytes(
        bytes(int(f"{x:08b}"[::-1], 2) for x in KEY), "big")
    r = cfg.realised()
    assert r["zs"] == 52429 / 65536 * 0.25 and abs(sum(r.values()) - 1) < 1e-15
    m = PatternConfig(**SEED002).realised()
    assert abs(m["z"] - 0.754) <= 2**-17 and abs(sum(m.values()) - 1) < 1e-15
    assert isinstance(cfg.regs(), PatternRegs)


@pytest.mark.parametrize("d,msg", [
    ({"protocol": "bb84"}, "protocol must be 'sns' or 'mdi', not 'bb84'"),
    ({"p_z": 1.5}, r"p_z must be a probability in \[0, 1\], not 1.5"),
    ({"p_x0": 0.5, "p_x1": 0.1, "p_x2": 0.1}, "p_x0 \\+ p_x1 \\+ p_x2 must sum to 1"),
    ({"protocol": "mdi", "p_z": 0.5, "p_y": 0.1, "p_x": 0.1, "p_o": 0.1}, "must sum to 1"),
    ({"phase_slices": 12}, "phase_slices must be a power of two in 1..256, not 12"),
    ({"lanes": 3}, "lanes must be 1, 2, 4 or 8, not 3"),
    ({"lanes": 4, "n_q": 6}, "n_q and n_r must be multiples of lanes=4"),
    ({"frame_len": 10}, r"frame_len must be an int in \[36, "),
    ({"eps": 0.1, "bogus": 1}, "unknown pattern config field 'bogus'"),
    ({"protocol": "mdi", "eps": 0.1}, "unknown pattern config field 'eps' for protocol 'mdi'"),
    ({"source": "dice"}, "source must be 'trivium' or 'qrng', not 'dice'"),
    ({"im_lut": [0] * 15}, "im_lut must have 16 entries, not 15"),
])
def test_from_dict_errors_name_the_field(d, msg):
    with pytest.raises(ValueError, match=msg):
        PatternConfig.from_dict(d)


def test_from_dict_roundtrip_and_argument_errors():
    cfg = PatternConfig.from_dict({**SEED002, "lanes": 2, "n_q": 1024, "n_r": 64,
                                   "pm_lut": list(range(32))})
    assert cfg.pm_lut == tuple(range(32)) and cfg.lanes == 2
    with pytest.raises(ValueError, match="key must be 10 bytes"):
        regenerate(cfg, b"short", 0, 10)
    with pytest.raises(ValueError, match="count must be a non-negative int, not -1"):
        regenerate(cfg, KEY, 0, -1)
    with pytest.raises(ValueError, match="slots must be a 1-D integer array"):
        regenerate_slots(cfg, KEY, np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="cfg.source must be 'trivium'"):
        regenerate(PatternConfig(source="qrng"), KEY, 0, 1)
    assert regenerate(cfg, KEY, 5, 0).size == 0


def _five_sigma(counts, probs, n):
    for c, p in probs.items():
        sigma = np.sqrt(n * p * (1 - p))
        assert abs(counts[c] - n * p) <= 5 * sigma + 1e-9, (c, counts[c], n * p)


def test_statistics_1e7_slots_sns():
    cfg = PatternConfig(p_z=0.7, eps=0.2, p_x0=0.6, p_x1=0.3, p_x2=0.1, n_q=16384, n_r=512,
                        frame_len=65536)
    n = 10**7
    s = regenerate(cfg, KEY, 10**9, n)
    q = s[s["cls"] != CLS_REF]
    sched = (s["slot"] % np.uint64(65536)) % np.uint64(16384 + 512) >= 16384
    np.testing.assert_array_equal(s["cls"] == CLS_REF, sched)
    counts = np.bincount(q["cls"], minlength=7)
    names = ("zn", "zs", "x0", "x1", "x2")
    _five_sigma({i: counts[i] for i in range(5)} | {}, {i: cfg.realised()[nm]
                for i, nm in enumerate(names)}, len(q))
    phase = np.bincount(q["phase_slice"], minlength=16)
    assert stats.chisquare(phase).pvalue > 1e-4
    # basis/bit follow the class
    assert ((q["basis"] == 0) == (q["cls"] <= 1)).all()
    assert ((q["bit"] == 1) == (q["cls"] == 1)).all()


def test_statistics_1e7_slots_mdi():
    cfg = PatternConfig(lanes=4, frame_len=1 << 16, n_q=1 << 16, **SEED002)
    n = 10**7
    s = regenerate(cfg, KEY, 0, n)
    counts = np.bincount(s["cls"], minlength=7)
    _five_sigma({i: counts[i] for i in range(4)},
                {i: cfg.realised()[nm] for i, nm in enumerate(("z", "y", "x", "o"))}, n)
    assert counts[4:].sum() == 0
    assert stats.chisquare(np.bincount(s["phase_slice"], minlength=16)).pvalue > 1e-4
    bits = s["bit"]
    assert abs(bits.mean() - 0.5) < 5 * 0.5 / np.sqrt(n)
    # per-lane uniformity (each lane is its own Trivium stream)
    lane_z = [np.mean(s["cls"][j::4] == 0) for j in range(4)]
    assert max(abs(z - cfg.realised()["z"]) for z in lane_z) < 5 * np.sqrt(0.754 * 0.246 / (n / 4))


@pytest.mark.slow
def test_bench_quick_reports_figures():
    from combkey.pattern_bench import run
    r = run(quick=True)
    for k in ("regen_sns_slots_per_cpu_s", "regen_mdi_slots_per_cpu_s",
              "keystream_numba_gbit_per_cpu_s", "regen_subset_1pct_slots_per_cpu_s"):
        assert r[k] > 0
    assert r["rows"] == []


@pytest.mark.slow
def test_bench_synthesis_top_converts():
    from amaranth.back import verilog

    from combkey.pattern_bench import synth_top
    text = verilog.convert(synth_top(2, 2), name="top")
    assert "module top" in text and "bus__addr" in text


@pytest.mark.slow
def test_bench_generator_alone_converts():
    from amaranth.back import verilog

    from combkey.pattern_bench import DESIGNS, core_top
    text = verilog.convert(core_top(2), name="top")
    assert "o_payload" in text and "ctrl_stb" in text and "count6" in text
    assert set(DESIGNS) == {"gen_1ch_x1", "gen_1ch_x1_core", "tx_16ch_x1", "tx_4ch_x4"}
