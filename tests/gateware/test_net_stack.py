"""NetStack (ARP, ICMP, UDP register port, record stream) against NetModel, frame by frame."""
import gc
import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from combkey.gateware.bridge import (
    CMD_READ,
    CMD_WRITE,
    BridgeModel,
    RegBridge,
    decode_response,
    encode_request,
)
from combkey.gateware.net.mac import Octet, RxError
from combkey.gateware.net.stack import (
    DEFAULT_IP,
    DEFAULT_MAC,
    REG_PORT,
    STREAM_PORT,
    STREAM_START,
    NetModel,
    NetStack,
    arp_request,
    decode_stream_datagram,
    icmp_echo_request,
    ip_checksum,
    udp_frame,
)
from combkey.gateware.regs import Access, BankModel, Reg, RegisterBank, RegisterMap
from combkey.gateware.stream import make_simulator

HOST_MAC = 0x02_00_00_00_00_AA
HOST_IP = 0x0A_00_00_01
HOST_PORT = 50000


def _regmap(stack):
    return RegisterMap([("", [Reg("scratch", 32, Access.RW, doc="Scratch."),
                              Reg("wide", 64, Access.RW, doc="Wide.")]),
                        ("bridge", RegBridge.registers()), ("net", stack.registers())])


class Top(wiring.Component):
    """NetStack with a RegBridge and a RegisterBank on its register port."""

    def __init__(self, **kw):
        self.stack = NetStack(**kw)
        self.regmap = _regmap(self.stack)
        super().__init__({"rx": In(stream.Signature(Octet)), "tx": Out(stream.Signature(Octet)),
                          "records": In(stream.Signature(64))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.stack = stack = self.stack
        m.submodules.bridge = bridge = RegBridge(map_size=self.regmap.size, timeout_cycles=64)
        m.submodules.bank = bank = RegisterBank(self.regmap)
        wiring.connect(m, wiring.flipped(self.rx), stack.rx)
        wiring.connect(m, stack.tx, wiring.flipped(self.tx))
        wiring.connect(m, wiring.flipped(self.records), stack.records)
        wiring.connect(m, stack.reg_rx, bridge.rx)
        wiring.connect(m, bridge.tx, stack.reg_tx)
        wiring.connect(m, bridge.bus, bank.bus)
        return m


def run_stack(items, records=(), idle=3000, tx_stall=None, **kw):
    """Send ``items`` ((frame, err) or ("gap", cycles)) into the stack; return the sent frames
    and the counters. ``records`` are offered on the record input after the frames."""
    top = Top(**kw)
    sim = make_simulator(top)
    out = []
    counters = {}
    rng = random.Random(5)

    async def driver(ctx):
        for item in items:
            if item[0] == "gap":
                await ctx.tick().repeat(item[1])
                continue
            frame, err = item
            for i, b in enumerate(frame):
                ctx.set(top.rx.payload, {"data": b, "first": i == 0, "last": i == len(frame) - 1,
                                         "err": err if i == len(frame) - 1 else 0})
                ctx.set(top.rx.valid, 1)
                await ctx.tick().until(top.rx.ready)
            ctx.set(top.rx.valid, 0)
            await ctx.tick().repeat(20)          # preamble + IFG on the wire
        for r in records:
            ctx.set(top.records.payload, r)
            ctx.set(top.records.valid, 1)
            await ctx.tick().until(top.records.ready)
        ctx.set(top.records.valid, 0)
        await ctx.tick().repeat(idle)
        for name in top.stack.signature.members:
            if name in NetModel().counters:
                counters[name] = ctx.get(getattr(top.stack, name))

    async def sink(ctx):
        cur = bytearray()
        while True:
            ready = 1 if tx_stall is None or rng.random() > tx_stall or cur else 0
            ctx.set(top.tx.ready, ready)
            _, _, valid, p = await ctx.tick().sample(top.tx.valid, top.tx.payload)
            if valid and ready:
                assert bool(p.first) == (not cur)
                cur.append(p.data)
                if p.last:
                    out.append(bytes(cur))
                    cur = bytearray()

    sim.add_testbench(driver)
    sim.add_testbench(sink, background=True)
    sim.run()
    return out, counters, top.regmap


def model_run(items, regmap, records=(), **kw):
    bank = BankModel(regmap)
    bridge = BridgeModel(bank, map_size=regmap.size, timeout_cycles=64)

    def brain(payload):
        n = len(bridge.out)
        bridge.feed(payload)
        bridge.idle(100_000)
        return bytes(bridge.out[n:])

    model = NetModel(bridge=brain, **kw)
    out = []
    for item in items:
        if item[0] != "gap":
            out += model.receive(item[0], item[1])
    out += model.stream_datagrams(records)
    return out, model.counters


def req(payload, **over):
    args = dict(dst_mac=DEFAULT_MAC, src_mac=HOST_MAC, src_ip=HOST_IP, dst_ip=DEFAULT_IP,
                sport=HOST_PORT, dport=REG_PORT, payload=payload)
    args.update(over)
    return udp_frame(**args)


def spaced(items, gap=300):
    """Leave each reply time to finish (a host waits for it) before the next request."""
    out = []
    for item in items:
        out += [item, ("gap", gap)]
    return out


def pad(frame):
    return frame + bytes(max(0, 60 - len(frame)))


OK = RxError.NONE


def test_arp_ping_and_register_access_match_model():
    ping = icmp_echo_request(DEFAULT_MAC, HOST_MAC, HOST_IP, DEFAULT_IP, 0x1234, 7,
                             bytes(range(100)))
    items = [
        (pad(arp_request(HOST_MAC, HOST_IP, DEFAULT_IP)), OK),
        (ping, OK),
        (pad(req(encode_request(1, CMD_WRITE, 0, 1, [0xDEADBEEF]))), OK),
        (pad(req(encode_request(2, CMD_READ, 0, 1))), OK),
        (pad(req(encode_request(2, CMD_WRITE, 0, 1, [0x1]))), OK),
        (pad(req(encode_request(2, CMD_WRITE, 0, 1, [0x2]))), OK),    # duplicate seq: ignored
        (pad(req(encode_request(3, CMD_READ, 0, 1))), OK),
    ]
    items = spaced(items)
    got, counters, regmap = run_stack(items, idle=400)
    expected, model_counters = model_run(items, regmap)
    assert got == expected
    assert counters == model_counters
    assert counters["arp_replies"] == 1 and counters["icmp_replies"] == 1
    assert counters["reg_replies"] == 5
    # The replies are valid: IP header checksums, and the register values read back.
    for frame in got[1:]:
        assert ip_checksum(frame[14:34]) == 0
    assert ip_checksum(got[1][34:]) == 0                  # ICMP checksum over the echo reply
    assert decode_response(got[3][42:]).words == (0xDEADBEEF,)
    assert decode_response(got[5][42:]).duplicate
    assert decode_response(got[6][42:]).words == (0x1,)


def test_malformed_frames_are_dropped_and_counted():
    good = pad(req(encode_request(1, CMD_READ, 0, 1)))
    bad_csum = bytearray(good)
    bad_csum[24] ^= 0xFF
    fragment = bytearray(req(encode_request(1, CMD_READ, 0, 1)))
    fragment[20] |= 0x20
    fragment[24:26] = b"\0\0"
    fragment[24:26] = ip_checksum(fragment[14:34]).to_bytes(2, "big")
    long_total = bytearray(good)
    long_total[16:18] = (200).to_bytes(2, "big")
    long_total[24:26] = b"\0\0"
    long_total[24:26] = ip_checksum(long_total[14:34]).to_bytes(2, "big")
    items = [
        (good, RxError.FCS),
        (good[:40], RxError.SHORT),
        (bytes(long_total), OK),
        (pad(req(encode_request(1, CMD_READ, 0, 1), dst_mac=0x02_00_00_00_00_99)), OK),
        (pad(req(encode_request(1, CMD_READ, 0, 1), dst_ip=0x0A_00_00_63)), OK),
        (pad(arp_request(HOST_MAC, HOST_IP, 0x0A_00_00_63)), OK),
        (pad(req(encode_request(1, CMD_READ, 0, 1), dport=9)), OK),
        (bytes(bad_csum), OK),
        (pad(bytes(fragment)), OK),
        (pad(bytes.fromhex("ffffffffffff") + HOST_MAC.to_bytes(6, "big") + b"\x86\xdd"), OK),
        (pad(req(b"\xc5\x01\x01")), OK),        # truncated bridge frame: no response
        (good, OK),
    ]
    items = spaced(items, gap=600)   # reg_no_reply waits reply_timeout = 512 cycles
    got, counters, regmap = run_stack(items, idle=800)
    expected, model_counters = model_run(items, regmap)
    assert got == expected
    assert counters == model_counters
    for name in ("bad_fcs", "foreign_mac", "wrong_port", "bad_ip_checksum", "reg_no_reply"):
        assert counters[name] == 1, name
    assert counters["truncated"] == 2 and counters["foreign_ip"] == 2
    assert counters["unsupported"] == 2 and counters["reg_replies"] == 1


def test_busy_reply_engine_drops_and_counts():
    ping = icmp_echo_request(DEFAULT_MAC, HOST_MAC, HOST_IP, DEFAULT_IP, 1, 1, bytes(600))
    arp = pad(arp_request(HOST_MAC, HOST_IP, DEFAULT_IP))
    items = [(ping, OK), (arp, OK)]
    # The sink stalls, so the echo reply is still going out when the ARP request ends.
    got, counters, regmap = run_stack(items, idle=3000, tx_stall=0.9)
    model = NetModel()
    assert got == model.receive(ping)
    model.receive(arp, busy=True)
    assert counters["busy"] == 1 and model.counters["busy"] == 1


def test_record_stream_matches_model_with_sequence_and_counts():
    start = pad(req(bytes([STREAM_START]), dport=STREAM_PORT))
    rng = random.Random(9)
    records = [rng.getrandbits(64) for _ in range(23)]
    items = [(start, OK)]
    got, counters, regmap = run_stack(items, records=records, idle=1000,
                                      records_per_datagram=10, fifo_depth=32, flush_cycles=100)
    expected, model_counters = model_run(items, regmap, records=records,
                                         records_per_datagram=10)
    assert got == expected
    assert counters == model_counters
    seqs, recs = [], []
    for frame in got:
        hdr, rs = decode_stream_datagram(frame[42:])
        seqs.append(int(hdr.seq))
        recs += rs
    assert seqs == [0, 1, 2] and recs == records


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_stack_parameter_errors():
    with pytest.raises(ValueError, match="stream_port must differ from reg_port, not 5"):
        NetStack(reg_port=5, stream_port=5)
    with pytest.raises(ValueError, match="records_per_datagram must be an integer in"):
        NetStack(records_per_datagram=181)
    with pytest.raises(ValueError, match="mac must be a 48-bit unicast address"):
        NetStack(mac=0x01_00_00_00_00_00)
    with pytest.raises(ValueError, match="record datagram must hold a 20-byte header"):
        decode_stream_datagram(b"\0" * 5)
    gc.collect()      # the half-built components warn "never used" here, not in a later test


def test_late_copy_of_an_old_write_is_dropped_as_stale():
    items = spaced([
        (pad(req(encode_request(5, CMD_WRITE, 0, 1, [0xA]))), OK),
        (pad(req(encode_request(6, CMD_WRITE, 0, 1, [0xB]))), OK),
        (pad(req(encode_request(5, CMD_WRITE, 0, 1, [0xA]))), OK),       # reordered, late
        (pad(req(encode_request(7, CMD_READ, 0, 1))), OK),
        (pad(req(encode_request(1, CMD_READ, 0, 1), sport=HOST_PORT + 1)), OK),  # new session
    ])
    got, counters, regmap = run_stack(items, idle=300)
    expected, model_counters = model_run(items, regmap)
    assert got == expected
    assert counters == model_counters
    assert counters["stale"] == 1
    assert decode_response(got[2][42:]).words == (0xB,)
    assert decode_response(got[3][42:]).words == (0xB,)
