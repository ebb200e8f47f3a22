"""cocotb bench of the Ethernet core on its RGMII pins, with a node behind it (Verilog DUT).

DUT: :class:`NetBenchTop` = :class:`~combkey.gateware.net.core.EthernetCore` +
``TransmitterNode`` on the register port + :class:`CounterRecordSource` on the record port,
converted to Verilog by Amaranth and run under Icarus Verilog. cocotbext-eth's ``RgmiiPhy``
plays the PHY: it drives RXC (125 MHz, its own phase) and the receive pins, and samples the
transmit pins on TXC. The bench drives ``clk`` (125 MHz) and ``tx90_clk`` 2 ns later (the
+90° TXC the PHY needs). Expected frames and counters come from
:class:`~combkey.gateware.net.stack.NetModel`; register addresses from the node's map (given by
the pytest side).
"""
import cocotb
import pytest
import runner
from amaranth.hdl import ClockDomain, Module, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer, with_timeout
from cocotb.utils import get_sim_time
from cocotbext.eth import GmiiFrame, RgmiiPhy

from combkey.gateware.bridge import CMD_READ, CMD_WRITE, decode_response, encode_request
from combkey.gateware.net.core import CounterRecordSource, EthernetCore
from combkey.gateware.net.mac import fcs
from combkey.gateware.net.stack import (
    COUNTERS,
    DEFAULT_IP,
    DEFAULT_MAC,
    REG_PORT,
    STREAM_PORT,
    STREAM_START,
    NetModel,
    arp_request,
    decode_stream_datagram,
    icmp_echo_request,
    ip_checksum,
    udp_frame,
)
from combkey.gateware.node import TransmitterNode

HOST_MAC = 0x02_00_00_00_00_AA
HOST_IP = 0x0A_00_00_01
HOST_PORT = 40000
CLK_NS = 8
#: ``sync`` of the two-clock DUT (50 MHz, as on the ECPIX-5).
SYS_HZ_TWO_CLOCKS = 50_000_000
RECORDS_PER_DATAGRAM = 180


class NetBenchTop(wiring.Component):
    """Ethernet core + transmitter node + counter record source, for the bench.

    ``two_clocks=True``: the core's stack and MAC run in their own ``eth`` domain (port
    ``eth_clk``, 125 MHz) and the node, the record source and every register in ``sync``
    (``clk``, 50 MHz), as on the ECPIX-5."""

    def __init__(self, two_clocks=False):
        self.two_clocks = two_clocks
        self.core = EthernetCore(tx_clk_mode="domain", flush_cycles=5000 if two_clocks else 2000,
                                 domain="eth" if two_clocks else "sync")
        self.node = TransmitterNode(clk_hz=SYS_HZ_TWO_CLOCKS if two_clocks else 125_000_000)
        self.regmap = self.node.regmap
        super().__init__({
            **({"eth_clk": In(1)} if two_clocks else {}),
            "tx90_clk": In(1),
            "rx_clk": In(1), "rx_ctl": In(1), "rxd": In(4),
            "tx_clk": Out(1), "tx_ctl": Out(1), "txd": Out(4),
            "src_enable": In(1), "src_period": In(16, init=1), "src_dropped": Out(32),
            "subscribed": Out(1), "tx_underruns": Out(32),
            **{name: Out(32) for name in COUNTERS},
        })

    def elaborate(self, platform):
        m = Module()
        m.domains.tx90 = cd = ClockDomain("tx90")
        m.d.comb += cd.clk.eq(self.tx90_clk)
        if self.two_clocks:
            m.domains.eth = cd_eth = ClockDomain("eth")
            m.d.comb += [cd_eth.clk.eq(self.eth_clk), cd_eth.rst.eq(ResetSignal())]
        m.submodules.core = core = self.core
        m.submodules.node = node = self.node
        m.submodules.src = src = CounterRecordSource()
        for name in ("rx_clk", "rx_ctl", "rxd"):
            m.d.comb += getattr(core, name).eq(getattr(self, name))
        for name in ("tx_clk", "tx_ctl", "txd", "subscribed", "tx_underruns", *COUNTERS):
            m.d.comb += getattr(self, name).eq(getattr(core, name))
        wiring.connect(m, core.reg_rx, node.rx)
        wiring.connect(m, node.tx, core.reg_tx)
        wiring.connect(m, src.o, core.records)
        m.d.comb += [src.enable.eq(self.src_enable), src.period.eq(self.src_period),
                     self.src_dropped.eq(src.dropped), core.upstream_dropped.eq(src.dropped)]
        return m


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.p = runner.params()
        self.phy = RgmiiPhy(runner.port(dut, "txd"), runner.port(dut, "tx_ctl"),
                            runner.port(dut, "tx_clk"), runner.port(dut, "rxd"),
                            runner.port(dut, "rx_ctl"), runner.port(dut, "rx_clk"),
                            speed=1000e6)
        if self.p.get("two_clocks"):
            cocotb.start_soon(Clock(dut.clk, 10**9 // SYS_HZ_TWO_CLOCKS, unit="ns").start())
            cocotb.start_soon(Clock(runner.port(dut, "eth_clk"), CLK_NS, unit="ns").start())
        else:
            cocotb.start_soon(Clock(dut.clk, CLK_NS, unit="ns").start())
        cocotb.start_soon(self._tx90())
        self.model = NetModel()
        self.seq = 0

    async def _tx90(self):
        await Timer(CLK_NS // 4, unit="ns")
        await Clock(runner.port(self.dut, "tx90_clk"), CLK_NS, unit="ns").start()

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 8)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 8)

    def counter(self, name):
        return int(runner.port(self.dut, name).value)

    async def settle(self):
        """Wait until the counters have crossed into ``sync`` (two handshake round trips)."""
        await Timer(1, unit="us")

    async def send(self, frame, *, raw=None):
        if raw is not None:
            await self.phy.rx.send(GmiiFrame.from_raw_payload(raw))
        else:
            await self.phy.rx.send(GmiiFrame.from_payload(frame))

    async def recv(self, timeout_us=40):
        f = await with_timeout(self.phy.tx.recv(), timeout_us, "us")
        assert f.check_fcs(), "FCS of a sent frame is wrong"
        assert f.get_preamble_len() == 8
        return bytes(f.get_payload())

    async def quiet(self, us=3):
        await self.phy.rx.wait()             # every queued frame is on the wire
        await Timer(us, unit="us")
        assert self.phy.tx.empty(), "the node sent an unexpected frame"

    def udp_payload(self, reply):
        """The UDP payload of a received frame (frames under 60 bytes arrive padded)."""
        return reply[42:34 + int.from_bytes(reply[38:40], "big")]

    def reg_frame(self, request, sport=HOST_PORT, **over):
        args = dict(dst_mac=DEFAULT_MAC, src_mac=HOST_MAC, src_ip=HOST_IP, dst_ip=DEFAULT_IP,
                    sport=sport, dport=REG_PORT, payload=request)
        args.update(over)
        return udp_frame(**args)

    async def transact(self, cmd, name, data=()):
        self.seq = (self.seq + 1) & 0xFF
        addr = self.p["addresses"][name]
        await self.send(self.reg_frame(encode_request(self.seq, cmd, addr, 1, data)))
        reply = await self.recv()
        assert ip_checksum(reply[14:34]) == 0
        assert reply[34:38] == REG_PORT.to_bytes(2, "big") + HOST_PORT.to_bytes(2, "big")
        rsp = decode_response(self.udp_payload(reply))
        assert rsp.seq == self.seq and rsp.ok
        return rsp


@cocotb.test()
async def arp_request_and_reply(dut):
    tb = TB(dut)
    await tb.reset()
    req = arp_request(HOST_MAC, HOST_IP, DEFAULT_IP) + bytes(18)
    await tb.send(req)
    reply = await tb.recv()
    expected, = tb.model.receive(req)
    assert reply == expected + bytes(60 - len(expected))
    assert reply[20:22] == b"\x00\x02" and reply[28:32] == DEFAULT_IP.to_bytes(4, "big")
    await tb.settle()
    assert tb.counter("arp_replies") == 1


@cocotb.test()
async def ping(dut):
    tb = TB(dut)
    await tb.reset()
    for seq, size in ((1, 56), (2, 1000)):
        req = icmp_echo_request(DEFAULT_MAC, HOST_MAC, HOST_IP, DEFAULT_IP, 0x4242, seq,
                                bytes((i * 7) & 0xFF for i in range(size)))
        await tb.send(req)
        reply = await tb.recv()
        expected, = tb.model.receive(req)
        assert reply == expected
        assert reply[34] == 0 and ip_checksum(reply[34:]) == 0
        assert reply[42:] == req[42:]
    await tb.settle()
    assert tb.counter("icmp_replies") == 2


@cocotb.test()
async def register_write_and_read_over_udp(dut):
    tb = TB(dut)
    await tb.reset()
    rsp = await tb.transact(CMD_READ, "magic")
    assert rsp.words == (tb.p["magic"],)
    for value in (0xDEADBEEF, 0x0, 0x1234_5678):
        await tb.transact(CMD_WRITE, "scratch", [value])
        assert (await tb.transact(CMD_READ, "scratch")).words == (value,)
    # A retried write (same sequence number) is answered but not applied again.
    await tb.send(tb.reg_frame(encode_request(tb.seq, CMD_WRITE, tb.p["addresses"]["scratch"],
                                              1, [0x5])))
    assert decode_response(tb.udp_payload(await tb.recv())).duplicate is False   # follows a read
    await tb.send(tb.reg_frame(encode_request(tb.seq, CMD_WRITE, tb.p["addresses"]["scratch"],
                                              1, [0x6])))
    assert decode_response(tb.udp_payload(await tb.recv())).duplicate
    assert (await tb.transact(CMD_READ, "scratch")).words == (0x5,)
    await tb.settle()
    assert tb.counter("reg_replies") == 10


@cocotb.test()
async def malformed_frames_dropped_and_counted(dut):
    tb = TB(dut)
    await tb.reset()
    good = tb.reg_frame(encode_request(1, CMD_READ, 0, 1))
    good += bytes(60 - len(good))
    # Bad FCS.
    await tb.send(None, raw=good + bytes(a ^ 0xFF for a in fcs(good)))
    # Truncated: a runt (40 bytes + FCS), and an IP total length longer than the frame.
    await tb.send(None, raw=good[:40] + fcs(good[:40]))
    longer = bytearray(good)
    longer[16:18] = (300).to_bytes(2, "big")
    longer[24:26] = b"\0\0"
    longer[24:26] = ip_checksum(longer[14:34]).to_bytes(2, "big")
    await tb.send(bytes(longer))
    # Bad IP header checksum.
    bad_csum = bytearray(good)
    bad_csum[25] ^= 0x01
    await tb.send(bytes(bad_csum))
    # Foreign MAC, foreign IP (UDP and ARP), wrong port.
    await tb.send(tb.reg_frame(encode_request(1, CMD_READ, 0, 1), dst_mac=0x02_00_00_00_00_77))
    await tb.send(tb.reg_frame(encode_request(1, CMD_READ, 0, 1), dst_ip=0x0A_00_00_63))
    await tb.send(arp_request(HOST_MAC, HOST_IP, 0x0A_00_00_63))
    await tb.send(tb.reg_frame(encode_request(1, CMD_READ, 0, 1), dport=53))
    await tb.quiet(5)
    expected = {"bad_fcs": 1, "truncated": 2, "bad_ip_checksum": 1, "foreign_mac": 1,
                "foreign_ip": 2, "wrong_port": 1, "reg_replies": 0, "rx_frames": 6}
    got = {name: tb.counter(name) for name in expected}
    assert got == expected, f"{got} != {expected}"
    # The node still answers afterwards.
    await tb.send(good)
    assert decode_response(tb.udp_payload(await tb.recv())).ok


@cocotb.test()
async def record_stream_full_rate(dut):
    tb = TB(dut)
    await tb.reset()
    period = tb.p["period"]
    n_datagrams = tb.p["datagrams"]
    lossless = tb.p.get("lossless", period >= 9)    # below the line rate
    runner.port(dut, "src_period").value = period
    await tb.send(tb.reg_frame(bytes([STREAM_START]), dport=STREAM_PORT) + bytes(20))
    await tb.phy.rx.wait()
    await ClockCycles(dut.clk, 50)
    assert int(runner.port(dut, "subscribed").value) == 1
    runner.port(dut, "src_enable").value = 1
    next_record = 0
    times = []
    values = []
    for k in range(n_datagrams):
        frame = await tb.recv(timeout_us=100)
        times.append(get_sim_time("ns"))
        assert frame[36:38] == HOST_PORT.to_bytes(2, "big")
        assert ip_checksum(frame[14:34]) == 0
        hdr, recs = decode_stream_datagram(frame[42:])
        assert int(hdr.seq) == k, "datagram sequence broken"
        assert int(hdr.first_index) == next_record
        assert int(hdr.count) == RECORDS_PER_DATAGRAM
        assert all(b > a for a, b in zip(recs, recs[1:], strict=False))
        next_record += len(recs)
        values += recs
        if lossless:                         # below the line rate: nothing may be lost
            assert recs == list(range(recs[0], recs[0] + len(recs)))
            assert int(hdr.fifo_dropped) == 0 and int(hdr.upstream_dropped) == 0
    runner.port(dut, "src_enable").value = 0
    await tb.settle()
    ns = times[-1] - times[0]
    rate = RECORDS_PER_DATAGRAM * (n_datagrams - 1) / ns * 1e9
    dut._log.info("sustained %.3f M records/s = %.1f Mbit/s of records", rate / 1e6,
                  rate * 64 / 1e6)
    assert tb.counter("stream_datagrams") >= n_datagrams
    assert tb.counter("tx_underruns") == 0
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
    if not lossless:                         # above the line rate: the losses are counted
        missing = values[-1] - values[0] + 1 - len(values)
        assert 0 < missing <= tb.counter("fifo_dropped"), (missing, tb.counter("fifo_dropped"))


def _run(tmp_path, test_filter, two_clocks=False, **params):
    top = NetBenchTop(two_clocks=two_clocks)
    regmap = top.regmap
    from combkey.gateware.node import MAGIC
    params = {"addresses": {r.name: regmap.address(r.name) for r in regmap}, "magic": MAGIC,
              "two_clocks": two_clocks, **params}
    return runner.run(top, "net_top", __file__, build_dir=tmp_path, params=params,
                      test_filter=test_filter)


@pytest.mark.cocotb
def test_net_protocols(tmp_path):
    tests, _ = _run(tmp_path, "arp_request|ping|register_write|malformed", period=9,
                    datagrams=3)
    assert tests == 4


@pytest.mark.cocotb
def test_net_two_clock_domains(tmp_path):
    """The same protocols, and a lossless record stream of 10^7 records/s (one every 5 cycles
    of 50 MHz), with the stack in a 125 MHz eth domain and the node, the records and every
    register in a 50 MHz sync domain."""
    tests, _ = _run(tmp_path, "arp_request|ping|register_write|malformed|record_stream",
                    two_clocks=True, period=5, lossless=True, datagrams=3)
    assert tests == 5


@pytest.mark.cocotb
def test_net_record_stream_full_rate(tmp_path):
    tests, _ = _run(tmp_path, "record_stream", period=9, datagrams=4)
    assert tests == 1


@pytest.mark.cocotb
@pytest.mark.slow
def test_net_record_stream_over_line_rate(tmp_path):
    tests, _ = _run(tmp_path, "record_stream", period=1, datagrams=8)   # > FIFO depth
    assert tests == 1
