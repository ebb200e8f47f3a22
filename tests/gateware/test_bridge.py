# amaranth: UnusedElaboratable=no
"""Register bridge: codec, and the simulated hardware against BridgeModel byte for byte."""
import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from combkey.gateware import bridge as br
from combkey.gateware.regs import Access, BankModel, Reg, RegisterBank, RegisterMap
from combkey.gateware.stream import make_simulator

TIMEOUT = 24
REGS = [Reg("scratch", 32, Access.RW, doc="s"), Reg("ro", 32, Access.R, doc="r"),
        Reg("wide", 64, Access.RW, doc="w"), Reg("sticky", 8, Access.RW1C, doc="c"),
        Reg("kick", 1, Access.W1P, doc="p")] + \
    [Reg(f"r{i}", 16, Access.RW, reset=i, doc="x") for i in range(12)]
REGMAP = RegisterMap([("", REGS)])


class BridgeTop(wiring.Component):
    """Bridge + bank with a map covering every access kind.

    ``read_latency=2`` puts a pipeline register on the bank's read data, as a node's
    ``SplitBank`` does, and tells the bridge.
    """

    rx: In(stream.Signature(8))
    tx: Out(stream.Signature(8))

    def __init__(self, read_latency=1):
        super().__init__()
        self.read_latency = read_latency
        self.bridge = br.RegBridge(map_size=REGMAP.size, timeout_cycles=TIMEOUT,
                                   read_latency=read_latency)
        self.bank = RegisterBank(REGMAP)

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = self.bridge
        m.submodules.bank = self.bank
        bb, kb = self.bridge.bus, self.bank.bus
        m.d.comb += [kb.addr.eq(bb.addr), kb.w_en.eq(bb.w_en), kb.w_data.eq(bb.w_data),
                     kb.r_en.eq(bb.r_en)]
        data = kb.r_data
        for _ in range(self.read_latency - 1):
            reg = Signal.like(data)
            m.d.sync += reg.eq(data)
            data = reg
        m.d.comb += bb.r_data.eq(data)
        wiring.connect(m, wiring.flipped(self.rx), self.bridge.rx)
        wiring.connect(m, self.bridge.tx, wiring.flipped(self.tx))
        m.d.comb += self.bank.reg("ro").data.eq(0xFEEDF00D)
        return m


def run_hw(schedule, stall_seed=None, read_latency=1):
    """Feed ``schedule`` (bytes objects and ('gap', n)); return output bytes and counters."""
    dut = BridgeTop(read_latency)
    sim = make_simulator(dut)
    out = bytearray()
    counters = {}
    done = [False]
    rng = random.Random(stall_seed)

    async def producer(ctx):
        for item in schedule:
            if isinstance(item, tuple):
                ctx.set(dut.rx.valid, 0)
                await ctx.tick().repeat(item[1])
                continue
            for b in item:
                ctx.set(dut.rx.payload, b)
                ctx.set(dut.rx.valid, 1)
                await ctx.tick().until(dut.rx.ready)
            ctx.set(dut.rx.valid, 0)
        await ctx.tick().repeat(600)
        for name in br.RegBridge.COUNTERS:
            counters[name] = ctx.get(getattr(dut.bridge, name))
        done[0] = True

    async def consumer(ctx):
        while True:
            ready = 1 if stall_seed is None else rng.random() < 0.6
            ctx.set(dut.tx.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.tx.valid, dut.tx.payload)
            if valid and ready:
                out.append(payload)

    sim.add_testbench(producer)
    sim.add_testbench(consumer, background=True)
    sim.run()
    assert done[0]
    return bytes(out), counters


def run_model(schedule):
    bank = BankModel(REGMAP)
    bank.inputs["ro"] = 0xFEEDF00D
    model = br.BridgeModel(bank, map_size=REGMAP.size, timeout_cycles=TIMEOUT)
    for item in schedule:
        if isinstance(item, tuple):
            model.idle(item[1])
        else:
            model.feed(item)
    return bytes(model.out), model.counters


def check(schedule, stall_seed=None, read_latency=1):
    hw_out, hw_counters = run_hw(schedule, stall_seed, read_latency)
    sw_out, sw_counters = run_model(schedule)
    assert hw_out == sw_out
    assert hw_counters == sw_counters
    return sw_out, sw_counters


def test_codec_round_trip_and_errors():
    req = br.encode_request(7, br.CMD_WRITE, 0x1234, 2, [1, 0xFFFF_FFFF])
    assert req[0] == br.SOF_REQUEST and len(req) == 1 + 5 + 8 + 2
    assert br.crc16(b"123456789") == 0x29B1   # CRC-16/CCITT-FALSE check value
    rsp = bytes([br.SOF_RESPONSE]) + bytes([7, 0, 1]) + (5).to_bytes(4, "little")
    rsp += br.crc16(rsp[1:]).to_bytes(2, "little")
    assert br.decode_response(rsp) == br.Response(7, 0, (5,))
    with pytest.raises(br.FrameError, match="CRC"):
        br.decode_response(rsp[:-1] + bytes([rsp[-1] ^ 1]))
    with pytest.raises(br.FrameError, match="start byte"):
        br.decode_response(b"\x00" + rsp[1:])
    with pytest.raises(ValueError, match=r"addr must be an integer in \[0, 65535\], not 70000"):
        br.encode_request(0, br.CMD_READ, 70000)


@pytest.mark.parametrize("read_latency", [1, 2])
def test_read_write_burst_and_errors_against_model(read_latency):
    A = REGMAP.address
    sched = [
        br.encode_request(1, br.CMD_WRITE, A("scratch"), 1, [0xCAFEBABE]),
        br.encode_request(2, br.CMD_READ, A("scratch")),
        br.encode_request(3, br.CMD_WRITE, A("wide"), 2, [0x11111111, 0x22222222]),
        br.encode_request(4, br.CMD_BURST_READ, 0, REGMAP.size),
        br.encode_request(5, br.CMD_READ, A("ro"), 2),                    # bad count
        br.encode_request(6, 0x7E, 0),                                    # bad command
        br.encode_request(7, br.CMD_BURST_READ, REGMAP.size - 1, 2),      # bad address
        br.encode_request(8, br.CMD_WRITE, 0, 17, [0] * 17),              # write too long
        br.encode_request(9, br.CMD_WRITE, A("scratch"), 1, [1]),
        br.encode_request(9, br.CMD_WRITE, A("scratch"), 1, [2]),         # retry: not applied
        br.encode_request(10, br.CMD_READ, A("scratch")),
    ]
    out, counters = check(sched, read_latency=read_latency)
    frames = []
    while out:
        n = br.response_length(out)
        frames.append(br.decode_response(out[:n]))
        out = out[n:]
    assert [f.status for f in frames] == [0, 0, 0, 0, br.STATUS_BAD_COUNT, br.STATUS_BAD_CMD,
                                          br.STATUS_BAD_ADDR, br.STATUS_BAD_COUNT, 0,
                                          br.FLAG_DUPLICATE, 0]
    assert frames[1].words == (0xCAFEBABE,)
    assert frames[3].words[A("ro")] == 0xFEEDF00D
    assert frames[3].words[A("wide"):A("wide") + 2] == (0x11111111, 0x22222222)
    assert frames[-1].words == (1,)
    assert counters["duplicates"] == 1 and counters["frames"] == 11


def test_corruption_truncation_and_recovery():
    good = br.encode_request(1, br.CMD_WRITE, 0, 1, [0x12345678])
    bad = bytearray(good)
    bad[6] ^= 0x40
    sched = [b"\x00\x11", bytes(bad), good[:5], ("gap", TIMEOUT), good,
             br.encode_request(2, br.CMD_READ, 0), good[:9], ("gap", TIMEOUT - 1), good[9:]]
    out, counters = check(sched)
    assert counters["crc_errors"] == 1 and counters["truncated"] == 1
    assert counters["skipped_bytes"] == 2
    # The frame resumed before the timeout still counts as one frame.
    assert counters["frames"] == 3


frame_st = st.one_of(
    st.builds(lambda s, a: br.encode_request(s, br.CMD_READ, a),
              st.integers(0, 255), st.integers(0, REGMAP.size + 2)),
    st.builds(lambda s, a, n: br.encode_request(s, br.CMD_BURST_READ, a, n),
              st.integers(0, 255), st.integers(0, REGMAP.size), st.integers(0, 6)),
    st.builds(lambda s, a, d: br.encode_request(s, br.CMD_WRITE, a, len(d), d),
              st.integers(0, 3), st.integers(0, REGMAP.size),
              st.lists(st.integers(0, 2**32 - 1), max_size=3)),
)
item_st = st.one_of(
    frame_st, frame_st, frame_st,
    # corrupted frame: flip one bit somewhere after the start byte
    st.builds(lambda f, i, b: f[:1 + i % (len(f) - 1)] + bytes([f[1 + i % (len(f) - 1)] ^ (1 << b)])
              + f[2 + i % (len(f) - 1):], frame_st, st.integers(0, 100), st.integers(0, 7)),
    # truncated frame followed by a long gap
    st.builds(lambda f, i: (f[:1 + i % (len(f) - 1)], ("gap", TIMEOUT + i % 5)),
              frame_st, st.integers(0, 100)),
    st.binary(min_size=1, max_size=3),
)


def _flatten(items):
    out = []
    for it in items:
        out.extend(it if isinstance(it, tuple) and isinstance(it[0], bytes) else [it])
    # A gap after every item so that a corrupted header cannot swallow the next frame forever.
    sched = []
    for it in out:
        sched += [it, ("gap", TIMEOUT)]
    return sched


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(item_st, min_size=1, max_size=8), st.one_of(st.none(), st.integers(0, 99)))
def test_random_frames_corruption_truncation(items, stall_seed):
    check(_flatten(items), stall_seed)


def test_read_latency_must_be_small_int():
    with pytest.raises(ValueError, match="read_latency must be 1, 2, 3 or 4, not 0"):
        br.RegBridge(map_size=4, read_latency=0)
