"""cocotb bench of the pattern generator on the Verilog that Amaranth emits (Icarus).

The bench configures a 2-lane channel through its register ports (the host's
``PatternRegs.writes``), starts it, records every emitted slot and compares all fields with the
numpy model (``map_slots(slot_raw_words(...))``). A second test runs the QRNG mode with
pre-loaded words followed by an underflow. Clock 100 MHz.
"""
import cocotb
import numpy as np
import pytest
import runner
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

LANES = 2
KEY = 0x35_C0FFEE_1234_5678_9ABC


def _setup():
    from amaranth.lib import data

    from combkey.gateware.pattern.generator import GeneratorParams, PatternRegs, slot_layout
    params = GeneratorParams(**runner.params()["params"])
    regs = PatternRegs(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in runner.params()["regs"].items()})
    lay = data.Layout.cast(slot_layout(params.phase_bits, params.im_bits, params.pm_bits))
    return params, regs, lay


class TB:
    def __init__(self, dut):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    def p(self, path):
        return runner.port(self.dut, path)

    async def reset(self):
        # every write strobe (the configuration registers' strobes are unused by the generator)
        for name in ("ctrl", "im_lut", "pm_lut", "qrng_data", "key_lo", "key_hi", "iv_tag",
                     "frame0", "frame_len", "n_q", "n_r", "ref_phase", "thr0", "thr1", "thr2",
                     "thr3"):
            self.p(name + "_stb").value = 0
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0

    async def write(self, name, value):
        """Apply a register value; W1P registers get their one-cycle strobe."""
        self.p(name).value = value
        if name in ("im_lut", "pm_lut", "qrng_data", "ctrl"):
            self.p(name + "_stb").value = 1
            await RisingEdge(self.dut.clk)
            self.p(name + "_stb").value = 0

    async def collect(self, n_clocks, limit):
        valid, payload = self.p("o_valid"), self.p("o_payload")
        words = []
        for _ in range(limit):
            await RisingEdge(self.dut.clk)
            if valid.value:
                words.append(int(payload.value))
                if len(words) == n_clocks:
                    break
        return words


def _decode(params, lay, words):
    vals = [w >> (j * lay.size) for w in words for j in range(params.lanes)]
    return {name: np.array([(v >> f.offset) & ((1 << f.width) - 1) for v in vals])
            for name, f in lay}


def _compare(model, got, n):
    for field in ("cls", "basis", "bit", "im_code", "pm_code", "phase_slice"):
        np.testing.assert_array_equal(got[field][:n], model[field][:n], err_msg=field)


@cocotb.test()
async def trivium_mode_matches_model(dut):
    from combkey.gateware.pattern.generator import map_slots, slot_raw_words
    params, regs, lay = _setup()
    tb = TB(dut)
    await tb.reset()
    for name, value in regs.writes(params, KEY):
        await tb.write(name, value)
    n_clocks = 3000
    words = await tb.collect(n_clocks, limit=n_clocks + 500)
    assert len(words) == n_clocks
    slots = regs.frame0 * regs.frame_len + np.arange(n_clocks * LANES, dtype=np.uint64)
    model = map_slots(params, regs, slot_raw_words(params, regs, KEY, slots), slots)
    _compare(model, _decode(params, lay, words), len(slots))
    await ClockCycles(dut.clk, 2)
    assert int(tb.p("count5").value) > 0      # reference slots were counted


@cocotb.test()
async def qrng_mode_then_underflow(dut):
    from combkey.gateware.pattern.generator import CLS_IDLE, CLS_REF, map_slots
    params, regs, lay = _setup()
    regs = type(regs)(**{**regs.__dict__, "qrng": True})
    tb = TB(dut)
    await tb.reset()
    rng = np.random.default_rng(5)
    qwords = rng.integers(0, 1 << 63, 20, dtype=np.uint64)
    for name, value in regs.writes(params, KEY)[:-1]:
        await tb.write(name, value)
    for w in qwords:
        await tb.write("qrng_data", int(w))
    await tb.write("ctrl", regs.writes(params)[-1][1])
    words = await tb.collect(40, limit=100)
    # stop (counters are kept) and take the slots still in the pipeline
    tb.p("ctrl").value = regs.writes(params, run=False)[-1][1]
    tb.p("ctrl_stb").value = 1
    words += await tb.collect(10, limit=1)
    tb.p("ctrl_stb").value = 0
    words += await tb.collect(10, limit=6)
    n = len(words) * LANES
    slots = regs.frame0 * regs.frame_len + np.arange(n, dtype=np.uint64)
    raw = np.zeros(n, dtype=np.uint64)
    raw[:20] = qwords & np.uint64((1 << params.slot_bits) - 1)
    model = map_slots(params, regs, raw, slots, idle=np.arange(n) >= 20)
    got = _decode(params, lay, words)
    _compare(model, got, n)
    assert int(tb.p("count6").value) == int((got["cls"] == CLS_IDLE).sum()) > 0
    assert int(tb.p("count5").value) == int((got["cls"] == CLS_REF).sum()) > 0


# --- pytest side ---------------------------------------------------------------------------


def _wrapped(params):
    """The generator with ``o`` flattened to ``o_valid``/``o_payload``.

    ``o`` is ``always_ready``, so its ``ready`` is a constant, which Verilog export cannot
    make a port; every other member is passed through unchanged.
    """
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import Out

    from combkey.gateware.pattern.generator import PatternGenerator

    class Wrapped(wiring.Component):
        def __init__(self):
            self.gen = PatternGenerator(params)
            members = {n: m for n, m in self.gen.signature.members.items() if n != "o"}
            members["o_valid"] = Out(1)
            members["o_payload"] = Out(self.gen.o.payload.shape())
            super().__init__(members)

        def elaborate(self, platform):
            m = Module()
            m.submodules.gen = self.gen
            for name, member in self.gen.signature.members.items():
                if name == "o":
                    continue
                if member.flow == wiring.In:
                    m.d.comb += getattr(self.gen, name).eq(getattr(self, name))
                else:
                    m.d.comb += getattr(self, name).eq(getattr(self.gen, name))
            m.d.comb += [self.o_valid.eq(self.gen.o.valid),
                         self.o_payload.eq(self.gen.o.payload)]
            return m
    return Wrapped()


@pytest.mark.cocotb
def test_pattern_generator_cocotb(tmp_path):
    from combkey.gateware.pattern.generator import GeneratorParams, PatternRegs
    params = GeneratorParams(lanes=LANES)
    rng = np.random.default_rng(11)
    regs = PatternRegs(
        mdi=False, thr=(40000, 20000, 15000, 45000), frame_len=LANES * 150, n_q=12, n_r=4,
        ref_phase_start=2, ref_phase_step=3, iv_tag=0x1234567, frame0=987654321,
        im_lut=tuple(int(x) for x in rng.integers(0, 1 << 16, 16)),
        pm_lut=tuple(int(x) for x in rng.integers(0, 1 << 16, 32)))
    regs.check(params)
    p = {"params": params.__dict__, "regs": {k: list(v) if isinstance(v, tuple) else v
                                             for k, v in regs.__dict__.items()}}
    tests, _ = runner.run(_wrapped(params), "pattern_gen", __file__,
                          build_dir=tmp_path, params=p, min_tests=2)
    assert tests == 2
