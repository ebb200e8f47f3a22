"""PatternGenerator hardware against its numpy model, slot by slot.

Every test drives the component through its register ports (the same writes the host gives,
``PatternRegs.writes``), collects every emitted slot and compares all fields with
``map_slots(slot_raw_words(...))``. Frames are kept short so that many ping-pong re-keyings,
reference blocks and frame boundaries fall inside each run.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from combkey.gateware.pattern.generator import (
    CLS_IDLE,
    CLS_REF,
    GeneratorParams,
    PatternGenerator,
    PatternRegs,
    map_slots,
    slot_raw_words,
)
from combkey.gateware.regs import RegBus, RegisterBank, RegisterMap, connect_registers
from combkey.gateware.stream import make_simulator

sys.path.insert(0, str(Path(__file__).parent))
from pattern_harness import decode_lanes, rtl_run  # noqa: E402


def _regs(params, rng, mdi, n_r=True, frame_clocks=None):
    R, L, M = params.prob_bits, params.lanes, params.slices
    one = 1 << R
    if mdi:
        t = sorted(int(x) for x in rng.integers(0, one + 1, 3))
        thr = (t[0], t[1], t[2], int(rng.integers(0, one + 1)))
    else:
        t2, t3 = sorted(int(x) for x in rng.integers(0, one + 1, 2))
        thr = (int(rng.integers(0, one + 1)), int(rng.integers(0, one + 1)), t2, t3)
    fc = frame_clocks or int(rng.integers(params.min_frame_clocks, 3 * params.min_frame_clocks))
    return PatternRegs(
        mdi=mdi, thr=thr, frame_len=fc * L,
        n_q=L * int(rng.integers(1, 12)), n_r=L * int(rng.integers(1, 5)) if n_r else 0,
        ref_phase_start=int(rng.integers(0, M)), ref_phase_step=int(rng.integers(0, M)),
        iv_tag=int(rng.integers(0, 1 << 28)), frame0=int(rng.integers(0, 1 << 48)),
        im_lut=tuple(int(x) for x in rng.integers(0, 1 << params.im_bits, 16)),
        pm_lut=tuple(int(x) for x in rng.integers(0, 1 << params.pm_bits, 2 * M)))


def check_against_model(params, regs, key, n_slots):
    hw, final = rtl_run(params, regs, key, n_slots)
    assert len(hw) >= n_slots
    raw = slot_raw_words(params, regs, key, hw["slot"])
    model = map_slots(params, regs, raw, hw["slot"])
    for field in model.dtype.names:
        np.testing.assert_array_equal(hw[field], model[field], err_msg=field)
    counts = np.bincount(hw["cls"], minlength=7)
    assert [final[f"count{c}"] for c in range(7)] == counts.tolist()
    return hw, final


@pytest.mark.parametrize("lanes,mdi", [(4, False), (8, True)])
def test_hw_vs_model_1e4_slots(lanes, mdi):
    rng = np.random.default_rng(lanes)
    params = GeneratorParams(lanes=lanes)
    regs = _regs(params, rng, mdi)
    hw, _ = check_against_model(params, regs, int(rng.integers(0, 1 << 62)) << 18, 10_000)
    assert len(np.unique(hw["slot"] // np.uint64(regs.frame_len))) > 10   # many re-keyings
    assert (hw["cls"] == CLS_REF).any()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lanes=st.sampled_from([1, 2, 4, 8]), mdi=st.booleans(), seed=st.integers(0, 2**32 - 1),
       prob_bits=st.sampled_from([16, 17, 24]), phase_bits=st.sampled_from([0, 1, 4, 8]),
       with_ref=st.booleans())
def test_hw_vs_model_random_configs(lanes, mdi, seed, prob_bits, phase_bits, with_ref):
    rng = np.random.default_rng(seed)
    params = GeneratorParams(lanes=lanes, prob_bits=prob_bits, phase_bits=phase_bits,
                             im_bits=int(rng.integers(1, 17)), pm_bits=int(rng.integers(1, 17)))
    regs = _regs(params, rng, mdi, n_r=with_ref)
    key = int(rng.integers(0, 1 << 63)) << 17 | int(rng.integers(0, 1 << 17))
    check_against_model(params, regs, key, 300 * lanes)


@pytest.mark.slow
@pytest.mark.parametrize("lanes,mdi", [(1, False), (1, True), (2, True), (4, False),
                                       (8, False), (8, True)])
def test_hw_vs_model_1e5_slots(lanes, mdi):
    rng = np.random.default_rng(100 + lanes + 10 * mdi)
    params = GeneratorParams(lanes=lanes)
    regs = _regs(params, rng, mdi, frame_clocks=4000 // lanes + 37)
    check_against_model(params, regs, int(rng.integers(0, 1 << 62)), 100_000)


@pytest.mark.parametrize("lanes", [1, 4])
def test_no_gaps_at_minimum_frame_length(lanes):
    """Ping-pong re-keying keeps up: at F / L = min_frame_clocks every clock carries slots."""
    params = GeneratorParams(lanes=lanes)
    regs = PatternRegs(frame_len=params.min_frame_clocks * lanes, n_q=lanes, n_r=lanes)
    dut = PatternGenerator(params)
    sim = make_simulator(dut)
    valid = []

    async def tb(ctx):
        for name, value in regs.writes(params, 123, run=False)[:-1]:
            if name not in ("im_lut", "pm_lut"):
                ctx.set(getattr(dut, name), value)
        ctx.set(dut.ctrl, 1)
        ctx.set(dut.ctrl_stb, 1)
        await ctx.tick()
        ctx.set(dut.ctrl_stb, 0)
        for _ in range(12 * params.min_frame_clocks):
            await ctx.tick()
            valid.append(ctx.get(dut.o.valid))

    sim.add_testbench(tb)
    sim.run()
    first = valid.index(1)
    assert valid[first:].count(0) == 0 and len(valid) - first > 10 * params.min_frame_clocks


def test_qrng_mode_and_underflow():
    """Pre-filled words map exactly; then quantum slots become IDLE and are counted."""
    rng = np.random.default_rng(7)
    params = GeneratorParams(lanes=2, qrng_depth=32)
    regs = PatternRegs(**{**_regs(params, rng, False).__dict__, "qrng": True,
                          "n_q": 6, "n_r": 2, "frame_len": 2 * params.min_frame_clocks})
    words = rng.integers(0, 1 << 63, 2 * 30, dtype=np.uint64) | np.uint64(1 << 63)
    hw, final = rtl_run(params, regs, 0, 200, qrng_words=words)
    slots = hw["slot"]
    S = params.slot_bits
    raw = np.zeros(len(hw), dtype=np.uint64)
    raw[:60] = words & np.uint64((1 << S) - 1)
    idle = np.arange(len(hw)) >= 60
    model = map_slots(params, regs, raw, slots, idle=idle)
    for field in model.dtype.names:
        np.testing.assert_array_equal(hw[field], model[field], err_msg=field)
    n_idle = int((hw["cls"] == CLS_IDLE).sum())
    assert n_idle > 50 and final["count6"] == n_idle
    assert final["qrng_overflow"] == 0 and final["qrng_level"] == 0


def test_qrng_overflow_counted():
    params = GeneratorParams(lanes=1, qrng_depth=4)
    regs = PatternRegs(qrng=True, frame_len=params.min_frame_clocks,
                       n_q=params.min_frame_clocks)
    words = np.arange(10, dtype=np.uint64)
    _, final = rtl_run(params, regs, 0, 0, qrng_words=words, max_cycles=1)
    # 10 words into a 4-line FIFO: 6 are dropped and counted, 4 wait in the FIFO.
    assert final["qrng_overflow"] == 6 and final["qrng_level"] == 4


class _Top(wiring.Component):
    def __init__(self, params):
        self.gen = PatternGenerator(params)
        self.regmap = RegisterMap([("pattern0", self.gen.registers())])
        self.bank = RegisterBank(self.regmap)
        super().__init__({"bus": wiring.In(RegBus),
                          "o": wiring.Out(self.gen.o.signature)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.gen = self.gen
        m.submodules.bank = self.bank
        connect_registers(m, self.bank, "pattern0", self.gen)
        wiring.connect(m, wiring.flipped(self.bus), self.bank.bus)
        wiring.connect(m, self.gen.o, wiring.flipped(self.o))
        return m


def test_through_register_bank():
    """The host's register writes, sent word by word over the bus, give the model's slots."""
    rng = np.random.default_rng(3)
    params = GeneratorParams(lanes=2)
    regs = _regs(params, rng, True)
    key = int(rng.integers(0, 1 << 62)) << 16 | 0xBEEF
    top = _Top(params)
    sim = make_simulator(top)
    payloads = []
    counts = {}

    async def tb(ctx):
        for name, value in regs.writes(params, key):
            reg = top.regmap[f"pattern0.{name}"]
            addr = top.regmap.address(reg.name)
            for i in range(reg.words):
                ctx.set(top.bus.addr, addr + i)
                ctx.set(top.bus.w_data, (value >> (32 * i)) & 0xFFFF_FFFF)
                ctx.set(top.bus.w_en, 1)
                await ctx.tick()
        ctx.set(top.bus.w_en, 0)
        while len(payloads) < 400:
            await ctx.tick()
            if ctx.get(top.o.valid):
                payloads.append(ctx.get(top.o.payload.as_value()))
        # read count0 (64 bit, two words) through the bus after stopping
        for name in ("count0", "count5"):
            addr = top.regmap.address(f"pattern0.{name}")
            words = []
            for i in range(2):
                ctx.set(top.bus.addr, addr + i)
                ctx.set(top.bus.r_en, 1)
                await ctx.tick()
                ctx.set(top.bus.r_en, 0)
                words.append(ctx.get(top.bus.r_data))
            counts[name] = words[0] | words[1] << 32
        # the configuration registers are write-only: the key written above reads as 0
        for name in ("key_lo", "frame_len", "thr0"):
            ctx.set(top.bus.addr, top.regmap.address(f"pattern0.{name}"))
            ctx.set(top.bus.r_en, 1)
            await ctx.tick()
            ctx.set(top.bus.r_en, 0)
            counts[name] = ctx.get(top.bus.r_data)

    sim.add_testbench(tb)
    sim.run()
    f = decode_lanes(params, payloads)
    slots = regs.frame0 * regs.frame_len + np.arange(len(f["cls"]), dtype=np.uint64)
    model = map_slots(params, regs, slot_raw_words(params, regs, key, slots), slots)
    for field in ("cls", "basis", "bit", "phase_slice", "im_code", "pm_code"):
        np.testing.assert_array_equal(f[field], model[field], err_msg=field)
    assert counts["count0"] >= int((model["cls"] == 0).sum()) > 0
    assert counts["count5"] >= int((model["cls"] == CLS_REF).sum()) > 0
    assert key & 0xFFFF_FFFF and regs.frame_len      # written non-zero
    assert counts["key_lo"] == counts["frame_len"] == counts["thr0"] == 0


def test_parameter_errors_name_the_field():
    with pytest.raises(ValueError, match="lanes must be 1, 2, 4 or 8, not 3"):
        GeneratorParams(lanes=3)
    with pytest.raises(ValueError, match="prob_bits must be an int in \\[16, 24\\], not 12"):
        GeneratorParams(prob_bits=12)
    p = GeneratorParams(lanes=4)
    with pytest.raises(ValueError, match="frame_len must be a multiple of lanes=4"):
        PatternRegs(frame_len=4001, n_q=4).check(p)
    with pytest.raises(ValueError, match=r"frame_len must be an int in \[144, "):
        PatternRegs(frame_len=8, n_q=4).check(p)
    with pytest.raises(ValueError, match=r"thr\[1\] must be an int in \[0, 65536\]"):
        PatternRegs(thr=(0, 70000, 0, 0), n_q=4).check(p)
    with pytest.raises(ValueError, match="thr\\[2\\] <= thr\\[3\\] must hold for SNS"):
        PatternRegs(thr=(0, 0, 5, 4), n_q=4).check(p)
    with pytest.raises(ValueError, match="pm_lut must have 32 entries"):
        PatternRegs(pm_lut=(0,) * 16, n_q=4).check(p)
