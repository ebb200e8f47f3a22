"""Whole relay node in pysim through ``Device`` (register names only): detector pulses injected
on ``tdc.in`` by a test-only testbench, tags and records read back (registers and the link
record stream) and decoded with the gateware's own definitions, against the model chain
(``tdc_model`` -> tags -> ``classifier_model``); reference events -> phase estimate."""
import numpy as np

from combkey.device import Device, SimLink
from combkey.gateware.dsp.ref_phase import RefPhaseModel, events_from_counts, ref_estimate_layout
from combkey.gateware.node import RelayNode
from combkey.gateware.reftap import reftap_model
from combkey.gateware.timing.classifier import (
    RECORD_FIELDS,
    ClassifierConfig,
    classifier_model,
    decode_records,
    slot_config,
)
from combkey.gateware.timing.tagger import encode_tag
from combkey.gateware.timing.tdc import tdc_model

PERIOD = 19200                      # two slots per clock cycle
GATE0 = (13000, 19200)        # clicks land at phase period - fine
WINDOW = 3000
FINE = (5000, 5100)                 # calibration of the full code, channels 0 and 1


def pulse_schedule(rng, n, channels, p, gap):
    """Per-cycle bit masks: channel c high for one cycle with probability p, at least ``gap``
    cycles apart (beyond the TDC hold-off, so every pulse is tagged)."""
    masks = np.zeros(n, np.int64)
    for c in range(channels):
        last = -gap
        for k in range(n):
            if k - last >= gap and rng.random() < p:
                masks[k] |= 1 << c
                last = k
    return masks


def test_pulses_to_tags_and_records():
    rng = np.random.default_rng(11)
    node = RelayNode()
    t = node.timing
    CH, LINES, TAPS = node.shape["channels"], node.shape["lines"], node.shape["taps"]
    nbits = LINES * TAPS
    n_run = 240
    masks = pulse_schedule(rng, n_run, CH, 0.08, 4)
    state = {"go": False, "k": 0, "ready_p": 0.05}
    trace = {"therm": [], "slot": [], "phase": []}
    streamed = []
    stream_rng = np.random.default_rng(5)
    pulse = getattr(node.tdc, "in")
    therm = t.tdc.therm.as_value()

    async def detectors(ctx):
        k = 0
        while True:
            ctx.set(pulse, int(masks[k]) if state["go"] and k < n_run else 0)
            ready = int(stream_rng.random() < state["ready_p"])
            ctx.set(node.link_records.ready, ready)
            _, _, th, slot, phase, valid, payload = await ctx.tick().sample(
                therm, t.slot.slot_edge, t.slot.phase_edge, node.link_records.valid,
                node.link_records.payload)
            trace["therm"].append(th)
            trace["slot"].append(slot)
            trace["phase"].append(phase)
            if valid and ready:
                streamed.append(payload)
            if state["go"]:
                k += 1

    link = SimLink("relay", node=node, testbenches=[detectors])
    dev = Device(link)
    cb = t.tdc.code_bits
    for c in range(CH):
        dev.write("tagger.cal_addr", c << cb | nbits)
        dev.write("tagger.cal_data", FINE[c])
    sc = slot_config(PERIOD)
    for key in ("period", "slots_per_cycle", "period_rem", "recip", "phase0"):
        dev.write(f"slot.{key}", sc[key])
    dev.write("slot.start", 1)
    # The reference tap watches every record that leaves (register reads and the stream).
    tap_cfg = {"lane": 0, "first": 3, "n_q": 40, "n_r": 24, "quarter": 0b0100}
    for key, value in tap_cfg.items():
        dev.write(f"reftap.{key}", value)
    dev.write("reftap.enable", 1)
    for key, value in (("mode", 0), ("gate0_lo", GATE0[0]), ("gate0_hi", GATE0[1]),
                       ("window", WINDOW)):
        dev.write(f"cls.{key}", value)
    state["go"] = True
    link.step(n_run + 40)
    dev.write("cls.flush", 1)
    link.step(10)
    # The host reads records while the link stream keeps taking some (1 % of cycles).
    state["ready_p"] = 0.01
    tags, recs = [], []
    while True:
        word = dev.read("cls.records")      # pops; an empty FIFO reads 0 (valid bit clear)
        if not word & 1:
            break
        recs.append(word)
    state["ready_p"] = 0.0
    while dev.read("tagger.tag_level"):
        tags.append(dev.read("tagger.tags"))

    # Model chain over exactly the taps the TDC saw.
    n = len(trace["therm"])
    th = np.zeros((n, CH, nbits), np.uint8)
    for k, word in enumerate(trace["therm"]):
        for c in range(CH):
            th[k, c] = [(word >> (c * nbits + j)) & 1 for j in range(nbits)]
    hit, code, dead = tdc_model(th, LINES, TAPS, holdoff=2)
    assert int(dead.sum()) == 0 and int(hit.sum()) == int(sum(bin(m).count("1") for m in masks))
    clicks, want_tags = [], []
    for k in np.nonzero(hit.any(axis=1))[0]:
        for c in np.nonzero(hit[k])[0]:
            assert code[k, c] == nbits          # the simulated chain is crossed in one cycle
            fine = FINE[c]
            clicks.append({"channel": int(c), "flags": 1, "fine": fine, "coarse": int(k),
                           "slot_edge": trace["slot"][k], "phase_edge": trace["phase"][k]})
            want_tags.append(encode_tag(int(c), 1, fine, int(k)))
    assert tags == want_tags and len(tags) > 20
    cfg = ClassifierConfig(mode=0, gate0=GATE0, window=WINDOW, period=PERIOD)
    m_recs, _, _ = classifier_model(clicks, cfg)

    def decoded(words):
        return [dict(zip(RECORD_FIELDS, (int(x) for x in r), strict=True))
                for r in decode_records(np.array(words, np.uint64))]

    got_reg, got_stream = decoded(recs), decoded(streamed)
    # Each record went to exactly one reader, in FIFO order for each.
    key = [tuple(r.values()) for r in m_recs]
    assert sorted(tuple(r.values()) for r in got_reg + got_stream) == sorted(key)
    for got in (got_reg, got_stream):
        idx = [key.index(tuple(r.values())) for r in got]
        assert idx == sorted(idx) and got, (len(got_reg), len(got_stream))
    assert dev.read("ref.streamed") == len(streamed)
    assert dev.read("cls.record_level") == 0
    assert any(r["double"] for r in m_recs)
    # Reference events made on chip from the same records, as the model makes them.
    link.step(200)
    want_events = reftap_model([{**r, "valid": 1} for r in m_recs], {**tap_cfg, "enable": 1})
    assert len(want_events) > 5 and any(e[3] for e in want_events)
    assert dev.read("reftap.drops") == 0
    assert dev.read("reftap.events") == len(want_events)


def test_reference_events_give_the_model_estimate():
    node = RelayNode()
    link = SimLink("relay", node=node)
    dev = Device(link)
    assert dev.read("ref.est") & 1 == 0
    lay = ref_estimate_layout(10)
    from amaranth.lib import data
    fields = data.Layout.cast(lay)
    model = RefPhaseModel(min_counts=1, count_width=10)
    rng = np.random.default_rng(2)
    for counts in ((5, 1, 2, 4), (0, 3, 6, 1)):
        for ev in events_from_counts(*counts, rng=rng):
            dev.write("ref.event", ev["quad"] | ev["d0"] << 1 | ev["d1"] << 2 | ev["last"] << 3)
        link.step(40)
        est = dev.read("ref.est")
        assert est & 1
        got = {name: (est >> (1 + f.offset)) & ((1 << f.width) - 1) for name, f in fields}
        if got["phase"] >= 1 << 15:
            got["phase"] -= 1 << 16
        assert got == model.period(*counts)
        assert dev.read("ref.est") & 1 == 0         # taken by the first read
    assert dev.read("ref.event_drops") == 0
    assert dev.read("phase.est_drops") == 0
