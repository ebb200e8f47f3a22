"""cocotb benches on the Verilog that Amaranth emits for the slot classifier and the tagger.

* ``classifier_*``: :class:`~combkey.gateware.timing.classifier.SlotClassifier` (MDI time-bin
  and polarization, TF): clicks pushed on ``i`` with random gaps, records popped through
  ``records``/``records_rd`` at a random rate; the record sequence, the annotated clicks on ``a``
  and the counters must equal :func:`classifier_model`.
* ``tagfifo_*``: :class:`~combkey.gateware.timing.tagger.Tagger` (merge, batch buffer, tag
  FIFO): random hits on every channel including all-channel bursts, random host pops; every
  cycle's ``tags``, ``tag_level``, ``o.valid`` and the loss counters must equal
  :func:`tagger_model`.

Ports are looked up from the component metadata through ``runner.port``.
"""
import random

import cocotb
import numpy as np
import pytest
import runner
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer

from combkey.gateware.timing.classifier import (
    RECORD_FIELDS,
    Annotated,
    ClassifierConfig,
    classifier_model,
    decode_records,
    slot_config,
)
from combkey.gateware.timing.tagger import Click, TaggerConfig, tagger_model

CLK_NS = 10


def classifier_bench(channels, record_depth):
    """SlotClassifier with its always-ready ``a`` stream brought out as ``a_valid``/``a_payload``
    (a constant ``ready`` cannot be a Verilog port)."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from combkey.gateware.timing.classifier import SlotClassifier

    class ClassifierBench(wiring.Component):
        def __init__(self):
            self.inner = SlotClassifier(channels, record_depth)
            members = {k: v for k, v in self.inner.signature.members.items() if k != "a"}
            members.update({"a_valid": Out(1), "a_payload": Out(Annotated)})
            super().__init__(members)

        def elaborate(self, platform):
            m = Module()
            m.submodules.inner = inner = self.inner
            for name, member in inner.signature.members.items():
                if name == "a":
                    continue
                if name == "i":
                    wiring.connect(m, wiring.flipped(self.i), inner.i)
                elif member.flow == In:
                    m.d.comb += getattr(inner, name).eq(getattr(self, name))
                else:
                    m.d.comb += getattr(self, name).eq(getattr(inner, name))
            m.d.comb += [self.a_valid.eq(inner.a.valid), self.a_payload.eq(inner.a.payload)]
            return m

    return ClassifierBench()


class TB:
    def __init__(self, dut):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, CLK_NS, unit="ns").start())

    def p(self, path):
        return runner.port(self.dut, path)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 1)


def _clicks(rng, n, period, channels):
    out, slot_edge, coarse = [], rng.randrange(1 << 32), 100
    while len(out) < n:
        coarse += rng.randrange(1, 30)
        slot_edge = (slot_edge + rng.randrange(1, 200)) & 0xFFFF_FFFF
        phase_edge = rng.randrange(period)
        centre = rng.randrange(0, 74_000)
        for _ in range(rng.randrange(1, 5)):
            out.append({"channel": rng.randrange(channels), "flags": 1,
                        "fine": max(0, centre + rng.randrange(-900, 900)), "coarse": coarse,
                        "slot_edge": slot_edge, "phase_edge": phase_edge})
    return out


CONFIGS = {
    "tf": ClassifierConfig(mode=0, gate0=(500, 3000), window=400, period=3840),
    "timebin": ClassifierConfig(mode=1, gate0=(100, 1500), gate1=(2000, 3600), window=600,
                                period=3840),
    "pol": ClassifierConfig(mode=2, gate0=(0, 2600), window=300, period=3072),
}


@cocotb.test()
@cocotb.parametrize(name=["tf", "timebin", "pol"])
async def classifier_matches_model(dut, name):
    """Records, annotated clicks and counters equal the model under random gaps and pops."""
    tb = TB(dut)
    cfg = CONFIGS[name]
    rng = random.Random(7 + len(name))
    clicks = _clicks(rng, 200, cfg.period, 8)
    sc = slot_config(cfg.period)
    for key, value in (("period", sc["period"]), ("recip", sc["recip"]), ("mode", cfg.mode),
                       ("window", cfg.window), ("gate0_lo", cfg.gate0[0]),
                       ("gate0_hi", cfg.gate0[1]), ("gate1_lo", cfg.gate1[0]),
                       ("gate1_hi", cfg.gate1[1]), ("flush", 0), ("records_rd", 0),
                       ("i.valid", 0)):
        tb.p(key).value = value
    await tb.reset()
    recs, ann = [], []
    rd, rec, av, ap = (tb.p(k) for k in ("records_rd", "records", "a_valid", "a_payload"))

    async def monitor():
        while True:
            await RisingEdge(dut.clk)
            if int(av.value):
                a = Annotated.from_bits(int(ap.value))
                ann.append({"channel": a.channel, "coarse": a.coarse, "fine": a.fine,
                            "phase": a.phase, "bin": a.bin})
            if int(rd.value) and int(rec.value):
                recs.append(int(rec.value))
            await Timer(1, unit="ns")
            rd.value = int(rng.random() < 0.4)

    cocotb.start_soon(monitor())
    valid, ready, payload = tb.p("i.valid"), tb.p("i.ready"), tb.p("i.payload")
    for c in clicks:
        payload.value = Click.const(c).as_value().value
        valid.value = 1
        while True:
            await RisingEdge(dut.clk)
            if int(ready.value):
                break
        valid.value = 0
        if rng.random() < 0.3:
            await ClockCycles(dut.clk, rng.randrange(1, 4))
    for _ in range(100 * len(clicks)):      # flush closes the records open when it arrives
        if len(ann) >= len(clicks):
            break
        await RisingEdge(dut.clk)
    tb.p("flush").value = 1
    await RisingEdge(dut.clk)
    tb.p("flush").value = 0
    await ClockCycles(dut.clk, 600)
    m_recs, m_ann, m_cnt = classifier_model(clicks, cfg)
    got = [dict(zip(RECORD_FIELDS, (int(x) for x in r), strict=True))
           for r in decode_records(np.array(recs, np.uint64))]
    assert ann == m_ann
    assert got == m_recs
    for key, value in m_cnt.items():
        assert int(tb.p(key).value) == value, key
    assert len(got) > 20


@cocotb.test()
@cocotb.parametrize(rd_p=[1.0, 0.3])
async def tagfifo_matches_model(dut, rd_p):
    """Tag FIFO head, level, output valid and loss counters equal the model every cycle."""
    tb = TB(dut)
    prm = runner.params()
    cfg = TaggerConfig(channels=prm["channels"], code_bits=prm["code_bits"],
                       batch_depth=prm["batch_depth"], tag_depth=prm["tag_depth"])
    n = 600
    rs = np.random.default_rng(int(rd_p * 10))
    hit = rs.random((n, cfg.channels)) < 0.12
    hit[10:14] = True
    code = rs.integers(0, 1 << cfg.code_bits, (n, cfg.channels)) * hit
    slot = rs.integers(0, 1 << 32, n)
    phase = rs.integers(0, 1 << 24, n)
    o_ready = rs.random(n) < 0.8
    tags_rd = rs.random(n) < rd_p
    for key, value in (("raw", 1), ("tag_enable", 1), ("hit", 0), ("tags_rd", 0),
                       ("o.ready", 0), ("cal_data_stb", 0)):
        tb.p(key).value = value
    await tb.reset()
    # Toggle the static inputs once so that every combinational block is evaluated (Icarus does
    # not run an always @* block whose inputs never change after time 0).
    for key in ("tag_enable", "raw", "o.ready", "tags_rd"):
        tb.p(key).value = 1 - int(tb.p(key).value)
    await Timer(1, unit="ns")
    for key in ("tag_enable", "raw", "o.ready", "tags_rd"):
        tb.p(key).value = 1 - int(tb.p(key).value)
    await Timer(1, unit="ns")
    # The free-running coarse counter has counted since reset: start the model there.
    cfg = TaggerConfig(channels=cfg.channels, code_bits=cfg.code_bits,
                       batch_depth=cfg.batch_depth, tag_depth=cfg.tag_depth,
                       coarse_init=int(dut.coarse.value))
    want = tagger_model(hit, code, slot, phase, o_ready, tags_rd, cfg, raw=1)
    cb = cfg.code_bits
    for k in range(n):
        tb.p("hit").value = int(sum(int(b) << i for i, b in enumerate(hit[k])))
        tb.p("code").value = int(sum(int(c) << (cb * i) for i, c in enumerate(code[k])))
        tb.p("slot_edge").value = int(slot[k])
        tb.p("phase_edge").value = int(phase[k])
        tb.p("o.ready").value = int(o_ready[k])
        tb.p("tags_rd").value = int(tags_rd[k])
        await Timer(1, unit="ns")
        assert int(tb.p("tags").value) == int(want["tags"][k]), k
        assert int(tb.p("tag_level").value) == want["tag_level"][k], k
        assert int(tb.p("o.valid").value) == want["o_valid"][k], k
        if want["o_valid"][k]:
            assert int(tb.p("o.payload").value) == want["o_payload"][k], k
        for c in range(cfg.channels):
            assert int(tb.p(f"lost_{c}").value) == want["lost"][k][c], (k, c)
        await RisingEdge(dut.clk)
    assert want["lost"][-1].sum() > 0 or rd_p == 1.0


# --- pytest side ---------------------------------------------------------------------------


@pytest.mark.cocotb
def test_cocotb_classifier(tmp_path):
    tests, _ = runner.run(classifier_bench(8, 8), "slot_classifier",
                          __file__, build_dir=tmp_path, test_filter="classifier_", min_tests=3)
    assert tests == 3


@pytest.mark.cocotb
def test_cocotb_tag_fifo(tmp_path):
    from combkey.gateware.timing.tagger import Tagger
    prm = {"channels": 6, "code_bits": 5, "batch_depth": 3, "tag_depth": 8}
    tests, _ = runner.run(Tagger(**prm), "tagger", __file__, build_dir=tmp_path, params=prm,
                          test_filter="tagfifo_", min_tests=2)
    assert tests == 2
