"""cocotb bench of the UART receiver and transmitter on the Verilog that Amaranth emits.

cocotbext-uart's ``UartSource`` drives ``rx_pin`` of :class:`~combkey.gateware.uart.UARTRx` and its
``UartSink`` listens to ``tx_pin`` of :class:`~combkey.gateware.uart.UARTTx`; the byte streams are
driven and checked from Python. Clock 50 MHz, 2 Mbaud (divisor 25; the bus models time bits in
whole nanoseconds, so the bit time must be one: 500 ns).
"""
import random

import cocotb
import pytest
import runner
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer
from cocotbext.uart import UartSink, UartSource

CLK_HZ = 50_000_000
BAUD = 2_000_000
CLK_NS = 1e9 / CLK_HZ


class TB:
    """Clock, reset and stream helpers around a UART DUT; ports come from the metadata."""

    def __init__(self, dut):
        self.dut = dut
        self.clk = dut.clk  # Amaranth names the sync domain's ports clk and rst
        self.rst = dut.rst
        cocotb.start_soon(Clock(self.clk, CLK_NS, unit="ns").start())

    def p(self, path):
        return runner.port(self.dut, path)

    async def reset(self):
        self.rst.value = 1
        await ClockCycles(self.clk, 4)
        self.rst.value = 0
        await ClockCycles(self.clk, 2)

    async def put(self, stream, byte):
        """Offer ``byte`` on the DUT's input stream until it is taken."""
        ready = self.p(f"{stream}.ready")
        self.p(f"{stream}.payload").value = byte
        self.p(f"{stream}.valid").value = 1
        while True:
            await RisingEdge(self.clk)
            if ready.value:
                break
            await RisingEdge(ready)  # sleep until ready rises instead of polling every cycle
        self.p(f"{stream}.valid").value = 0

    async def collect(self, stream, count, ready_p=1.0, rng=None):
        """Take ``count`` bytes from the DUT's output stream, with random ``ready`` stalls."""
        got = bytearray()
        ready, valid, payload = (self.p(f"{stream}.{m}") for m in ("ready", "valid", "payload"))
        while len(got) < count:
            ready.value = int(rng is None or rng.random() < ready_p)
            await RisingEdge(self.clk)
            if ready.value and valid.value:
                got.append(int(payload.value))
        ready.value = 0
        return bytes(got)


def _bit_ns():
    return round(1e9 / BAUD)


async def _drive_frame(pin, byte, stop=1):
    """Drive one frame by hand (cocotbext-uart cannot send a bad stop bit)."""
    bits = [0] + [(byte >> i) & 1 for i in range(8)] + [stop]
    for b in bits:
        pin.value = b
        await Timer(_bit_ns(), unit="ns")
    pin.value = 1


# --- receiver --------------------------------------------------------------------------------


@cocotb.test()
@cocotb.parametrize(skew=[0.0, -0.02, 0.02])
async def rx_random_bytes(dut, skew):
    """Random bytes back to back from UartSource (optionally 2 % off) arrive intact."""
    tb = TB(dut)
    tb.p("rx_pin").value = 1
    await tb.reset()
    rng = random.Random(1234)
    data = bytes(rng.randrange(256) for _ in range(48)) + b"\x00\xff\x55\xaa"
    source = UartSource(tb.p("rx_pin"), baud=BAUD * (1 + skew), bits=8, stop_bits=1)
    await source.write(data)
    got = await tb.collect("o", len(data), ready_p=0.5, rng=rng)
    assert got == data
    assert int(tb.p("framing_errors").value) == 0
    assert int(tb.p("overruns").value) == 0


@cocotb.test()
async def rx_framing_error_dropped_and_counted(dut):
    """A frame with a 0 stop bit is dropped and counted; the next good frame comes through."""
    tb = TB(dut)
    pin = tb.p("rx_pin")
    pin.value = 1
    await tb.reset()
    await _drive_frame(pin, 0x3C, stop=0)
    await Timer(3 * _bit_ns(), unit="ns")
    source = UartSource(pin, baud=BAUD, bits=8, stop_bits=1)
    await source.write(b"\xa7")
    got = await tb.collect("o", 1)
    assert got == b"\xa7"
    assert int(tb.p("framing_errors").value) == 1


@cocotb.test()
async def rx_overrun_counted(dut):
    """Bytes that complete while the previous one is not taken are dropped and counted."""
    tb = TB(dut)
    tb.p("rx_pin").value = 1
    tb.p("o.ready").value = 0
    await tb.reset()
    source = UartSource(tb.p("rx_pin"), baud=BAUD, bits=8, stop_bits=1)
    await source.write(b"\x01\x02\x03\x04")
    await source.wait()
    await Timer(2 * _bit_ns(), unit="ns")
    assert int(tb.p("overruns").value) == 3
    assert await tb.collect("o", 1) == b"\x01"


# --- transmitter -------------------------------------------------------------------------------


@cocotb.test()
@cocotb.parametrize(max_gap=[0, 40])
async def tx_random_bytes(dut, max_gap):
    """Bytes pushed into the stream (back to back, or with random gaps) reach UartSink."""
    tb = TB(dut)
    tb.p("i.valid").value = 0
    await tb.reset()
    sink = UartSink(tb.p("tx_pin"), baud=BAUD, bits=8, stop_bits=1)
    rng = random.Random(99 + max_gap)
    data = bytes(rng.randrange(256) for _ in range(40)) + b"\x00\xff"
    for byte in data:
        if max_gap:
            await ClockCycles(tb.clk, rng.randrange(max_gap))
        await tb.put("i", byte)
    got = bytearray()
    while len(got) < len(data):
        await sink.wait(timeout=20 * _bit_ns())
        assert not sink.empty(), f"UartSink got only {len(got)} of {len(data)} bytes"
        got.extend(sink.read_nowait())
    assert bytes(got) == data


# --- pytest side ---------------------------------------------------------------------------------


@pytest.mark.cocotb
def test_uart_rx(tmp_path):
    from combkey.gateware.uart import UARTRx
    tests, _ = runner.run(UARTRx(clk_hz=CLK_HZ, baud=BAUD), "uart_rx", __file__,
                          build_dir=tmp_path, test_filter="rx_", min_tests=5)
    assert tests == 5


@pytest.mark.cocotb
def test_uart_tx(tmp_path):
    from combkey.gateware.uart import UARTTx
    tests, _ = runner.run(UARTTx(clk_hz=CLK_HZ, baud=BAUD), "uart_tx", __file__,
                          build_dir=tmp_path, test_filter="tx_", min_tests=2)
    assert tests == 2
