"""cocotb bench of a whole node behind its UART: host frames on the real pins, Verilog DUT.

DUT: ``UARTLink(TransmitterNode(...))`` (and ``RelayNode`` for the identity check) converted to
Verilog by Amaranth and run under Icarus Verilog. cocotbext-uart's ``UartSource`` drives
``rx_pin`` with request frames from :func:`combkey.gateware.bridge.encode_request`;
``UartSink`` collects the response bytes on ``tx_pin`` for
:func:`~combkey.gateware.bridge.decode_response`. Addresses come from the node's register map
(passed in by the pytest side from ``node.regmap``), never from constants here.

Clock 50 MHz, 5 Mbaud (divisor 10; the bus models time bits in whole nanoseconds, 200 ns here;
the simulation cost is per clock cycle, so few cycles per bit keep the bench short), bridge
timeout 1000 cycles (20 us, 10 byte times) so that the truncated-frame case stays short.
"""
import random

import cocotb
import pytest
import runner
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer
from cocotbext.uart import UartSink, UartSource

from combkey.gateware.bridge import (
    CMD_BURST_READ,
    CMD_READ,
    CMD_WRITE,
    STATUS_BAD_ADDR,
    STATUS_OK,
    decode_response,
    encode_request,
    response_length,
)

CLK_HZ = 50_000_000
BAUD = 5_000_000
TIMEOUT_CYCLES = 1000
BIT_NS = round(1e9 / BAUD)
BYTE_NS = 10 * BIT_NS


class TB:
    """The host side of the link: frames out on ``rx_pin``, responses in from ``tx_pin``."""

    def __init__(self, dut):
        self.dut = dut
        self.params = runner.params()
        self.addr = self.params["addresses"]
        self.rx_pin = runner.port(dut, "rx_pin")
        self.source = UartSource(self.rx_pin, baud=BAUD, bits=8, stop_bits=1)
        self.sink = UartSink(runner.port(dut, "tx_pin"), baud=BAUD, bits=8, stop_bits=1)
        self.seq = 0
        cocotb.start_soon(Clock(dut.clk, 1e9 / CLK_HZ, unit="ns").start())

    async def reset(self):
        self.rx_pin.value = 1
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 4)

    async def receive(self, n, timeout_ns):
        """Return exactly ``n`` bytes from the line, or fewer if ``timeout_ns`` passes."""
        got = bytearray(self.sink.read_nowait())
        while len(got) < n:
            before = len(got)
            await self.sink.wait(timeout=timeout_ns)
            got += self.sink.read_nowait()
            if len(got) == before:
                break
        return bytes(got)

    async def transact(self, frame):
        """Send a request frame; return the decoded response (asserts one arrives)."""
        await self.source.write(frame)
        await self.source.wait()
        header = await self.receive(4, timeout_ns=30 * BYTE_NS)
        assert len(header) == 4, f"no response to {frame.hex()} (got {header.hex()})"
        rest = await self.receive(response_length(header) - 4, timeout_ns=30 * BYTE_NS)
        return decode_response(header + rest)

    def next_seq(self):
        self.seq = (self.seq + 1) & 0xFF
        return self.seq

    async def read(self, name, count=1):
        seq = self.next_seq()
        cmd = CMD_READ if count == 1 else CMD_BURST_READ
        resp = await self.transact(encode_request(seq, cmd, self.addr[name], count))
        assert resp.seq == seq, f"response seq {resp.seq} to request seq {seq}"
        assert resp.status == STATUS_OK, f"read {name}: status {resp.status:#x}"
        assert len(resp.words) == count
        return resp.words[0] if count == 1 else list(resp.words)

    async def write(self, name, *words):
        seq = self.next_seq()
        resp = await self.transact(encode_request(seq, CMD_WRITE, self.addr[name], len(words),
                                                  words))
        assert resp.seq == seq and resp.status == STATUS_OK, resp
        assert resp.words == ()

    async def quiet(self, ns):
        """Assert that nothing comes back on ``tx_pin`` for ``ns``."""
        extra = await self.receive(1, timeout_ns=ns)
        assert extra == b"", f"unexpected bytes on tx_pin: {extra.hex()}"


async def _start(dut):
    tb = TB(dut)
    await tb.reset()
    return tb


@cocotb.test()
async def identity_registers(dut):
    """magic, node_kind, clk_hz, version and map_hash read back what the node was built with."""
    tb = await _start(dut)
    for name, value in tb.params["identity"].items():
        got = await tb.read(name)
        assert got == value, f"{name}: read {got:#x}, expected {value:#x}"


@cocotb.test()
async def scratch_write_read_back(dut):
    """Words written to scratch read back; a write answers with status OK and no data."""
    tb = await _start(dut)
    assert await tb.read("scratch") == 0
    rng = random.Random(5)
    for value in (0xFFFF_FFFF, 0x0000_0001, 0xA5A5_5A5A, rng.getrandbits(32)):
        await tb.write("scratch", value)
        assert await tb.read("scratch") == value


@cocotb.test()
async def burst_read_identity_block(dut):
    """One burst read returns the identity block in address order, uptime as two words."""
    tb = await _start(dut)
    await tb.write("scratch", 0x1234_5678)
    first, last = tb.addr["magic"], tb.addr["uptime"] + 1
    words = await tb.read("magic", count=last - first + 1)
    by_addr = dict(zip(range(first, last + 1), words, strict=True))
    for name, value in tb.params["identity"].items():
        assert by_addr[tb.addr[name]] == value, name
    assert by_addr[tb.addr["scratch"]] == 0x1234_5678
    uptime = by_addr[tb.addr["uptime"]] | by_addr[tb.addr["uptime"] + 1] << 32
    assert 0 < uptime < 10 * CLK_HZ // 1000  # cycles since reset: well under 10 ms here
    later = await tb.read("uptime", count=2)
    assert (later[0] | later[1] << 32) > uptime


@cocotb.test()
async def burst_read_past_the_map_is_refused(dut):
    """A burst that runs off the end of the map answers bad address, and the link goes on."""
    tb = await _start(dut)
    size = tb.params["map_size"]
    seq = tb.next_seq()
    resp = await tb.transact(encode_request(seq, CMD_BURST_READ, size - 1, 2))
    assert resp.seq == seq and resp.status == STATUS_BAD_ADDR and resp.words == ()
    assert await tb.read("magic") == tb.params["identity"]["magic"]


@cocotb.test()
async def corrupted_frame_dropped_counted_and_recovered(dut):
    """A write with a bad CRC is not answered nor applied, counts in bridge.crc_errors, and the
    next frame is served."""
    tb = await _start(dut)
    await tb.write("scratch", 0x0BAD_F00D)
    assert await tb.read("bridge.crc_errors") == 0
    frames_before = await tb.read("bridge.frames")
    bad = bytearray(encode_request(tb.next_seq(), CMD_WRITE, tb.addr["scratch"], 1,
                                   [0xDEAD_BEEF]))
    bad[-1] ^= 0x5A
    await tb.source.write(bytes(bad))
    await tb.source.wait()
    await tb.quiet(20 * BYTE_NS)
    assert await tb.read("scratch") == 0x0BAD_F00D
    assert await tb.read("bridge.crc_errors") == 1
    # frames counts answered frames: the reads above, not the dropped one.
    assert await tb.read("bridge.frames") == frames_before + 3


@cocotb.test()
async def truncated_frame_dropped_counted_and_recovered(dut):
    """Half a frame then silence: dropped after the bridge timeout, counted in
    bridge.truncated, and the next frame is served."""
    tb = await _start(dut)
    frame = encode_request(tb.next_seq(), CMD_WRITE, tb.addr["scratch"], 1, [0x7777_7777])
    await tb.source.write(frame[:5])
    await tb.source.wait()
    await tb.quiet(2 * TIMEOUT_CYCLES * 1e9 / CLK_HZ)
    assert await tb.read("scratch") == 0
    assert await tb.read("bridge.truncated") == 1


@cocotb.test()
async def line_framing_error_counted_by_the_link(dut):
    """A byte with a zero stop bit is dropped by the UART, counted on framing_errors, and the
    bridge answers the next frame."""
    tb = await _start(dut)
    for level in [0] + [(0xC5 >> i) & 1 for i in range(8)] + [0]:
        tb.rx_pin.value = level
        await Timer(BIT_NS, unit="ns")
    tb.rx_pin.value = 1
    await Timer(3 * BIT_NS, unit="ns")
    assert int(runner.port(dut, "framing_errors").value) == 1
    assert await tb.read("magic") == tb.params["identity"]["magic"]
    assert int(runner.port(dut, "overruns").value) == 0


# --- pytest side ---------------------------------------------------------------------------------


def _run(kind, tmp_path, test_filter=None, min_tests=1):
    from combkey.gateware.node import MAGIC, NODE_KINDS, node_class
    from combkey.gateware.uart import UARTLink

    node = node_class(kind)(clk_hz=CLK_HZ, timeout_cycles=TIMEOUT_CYCLES)
    regmap = node.regmap
    identity = {"magic": MAGIC, "node_kind": NODE_KINDS[kind], "clk_hz": CLK_HZ,
                "version": node.version, "map_hash": regmap.map_hash()}
    params = {"addresses": {reg.name: regmap.address(reg.name) for reg in regmap},
              "identity": identity, "map_size": regmap.size}
    link = UARTLink(node, baud=BAUD)
    return runner.run(link, f"{kind}_uart", __file__, build_dir=tmp_path, params=params,
                      test_filter=test_filter, min_tests=min_tests)


@pytest.mark.cocotb
def test_transmitter_node_over_uart(tmp_path):
    tests, _ = _run("transmitter", tmp_path, min_tests=7)
    assert tests == 7


@pytest.mark.cocotb
def test_relay_node_identity_over_uart(tmp_path):
    tests, _ = _run("relay", tmp_path, test_filter="identity_registers|scratch_write")
    assert tests == 2
