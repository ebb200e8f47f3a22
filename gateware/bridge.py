"""Register bridge: framed binary requests over a byte stream, answered with status.

The bridge turns request frames arriving as bytes (from the UART, or from a UDP datagram) into
accesses on the register bank's :data:`~combkey.gateware.regs.RegBus` and answers every accepted
request with a response frame. The same file holds the frame codec that the host uses
(:func:`encode_request`, :func:`decode_response`) and :class:`BridgeModel`, the byte-exact model
of the hardware.

Frames (all multi-byte fields little endian)
--------------------------------------------
Request::

    0xC5 | seq | cmd | addr[15:0] | count | data (WRITE: 4*count bytes) | crc16

Response::

    0x5C | seq | status | count | data (4*count bytes) | crc16

* ``seq`` (0..255): chosen by the host; the response echoes it. A host increments it for every new
  request and reuses it for a retry.
* ``cmd``: :data:`CMD_READ` (``count`` must be 1), :data:`CMD_WRITE` (``count`` 1 to
  :data:`MAX_WRITE_WORDS` words to consecutive addresses), :data:`CMD_BURST_READ` (``count`` 1 to
  255 words from consecutive addresses).
* ``crc16``: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR) over every
  byte after the start byte and before the CRC; the same as Python's
  ``binascii.crc_hqx(data, 0xFFFF)``.
* ``status``: :data:`STATUS_OK`, :data:`STATUS_BAD_ADDR` (any word outside the map),
  :data:`STATUS_BAD_CMD`, :data:`STATUS_BAD_COUNT`; a response to an error carries no data.
  :data:`FLAG_DUPLICATE` is OR-ed into the status of a WRITE whose ``seq`` equals that of the
  write executed just before it with no other valid frame in between: the write is **not applied
  again** (a retried write after a lost response is harmless).

Error handling
--------------
* A frame whose CRC does not match is dropped without a response and counted in ``crc_errors``.
* A frame that stops arriving (no byte for ``timeout_cycles`` while inside a frame) is dropped and
  counted in ``truncated``; the bridge then hunts for the next start byte.
* Bytes outside a frame that are not the start byte are skipped and counted in ``skipped_bytes``.
So the bridge always recovers on the next well-formed frame after a gap of ``timeout_cycles``.

Timing: one request byte accepted per cycle; a read returns one response byte per cycle when the
consumer is ready (a word costs 2 cycles of bus access plus 4 byte cycles).
"""
import binascii
import contextlib
import dataclasses

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .regs import ADDR_BITS, Access, Reg, RegBus

__all__ = ["SOF_REQUEST", "SOF_RESPONSE", "CMD_READ", "CMD_WRITE", "CMD_BURST_READ",
           "STATUS_OK", "STATUS_BAD_ADDR", "STATUS_BAD_CMD", "STATUS_BAD_COUNT", "FLAG_DUPLICATE",
           "MAX_WRITE_WORDS", "MAX_BURST_WORDS", "FrameError", "Response", "crc16",
           "encode_request", "decode_response", "response_length", "RegBridge", "BridgeModel"]

SOF_REQUEST = 0xC5
SOF_RESPONSE = 0x5C
CMD_READ = 0x01
CMD_WRITE = 0x02
CMD_BURST_READ = 0x03
STATUS_OK = 0x00
STATUS_BAD_ADDR = 0x01
STATUS_BAD_CMD = 0x02
STATUS_BAD_COUNT = 0x03
FLAG_DUPLICATE = 0x80
MAX_WRITE_WORDS = 16
MAX_BURST_WORDS = 255
STATUS_NAMES = {STATUS_OK: "ok", STATUS_BAD_ADDR: "bad address", STATUS_BAD_CMD: "bad command",
                STATUS_BAD_COUNT: "bad count"}


class FrameError(ValueError):
    """A response frame is malformed (bad start byte, length or CRC)."""


def crc16(data):
    """CRC-16/CCITT-FALSE of ``data`` (bytes)."""
    return binascii.crc_hqx(bytes(data), 0xFFFF)


def encode_request(seq, cmd, addr, count=1, data=()):
    """Return the request frame as bytes.

    Raises ``ValueError`` naming the argument when a field does not fit its byte(s); it does not
    enforce the per-command count rules, so tests can send frames the bridge must refuse.
    """
    for name, value, bits in (("seq", seq, 8), ("cmd", cmd, 8), ("addr", addr, ADDR_BITS),
                              ("count", count, 8)):
        if not isinstance(value, int) or not 0 <= value < (1 << bits):
            raise ValueError(f"{name} must be an integer in [0, {(1 << bits) - 1}], "
                             f"not {value!r}")
    body = bytearray([seq, cmd, addr & 0xFF, addr >> 8, count])
    for word in data:
        if not 0 <= word <= 0xFFFF_FFFF:
            raise ValueError(f"data words must be in [0, 2**32-1], not {word!r}")
        body += int(word).to_bytes(4, "little")
    return bytes([SOF_REQUEST]) + bytes(body) + crc16(body).to_bytes(2, "little")


@dataclasses.dataclass(frozen=True)
class Response:
    seq: int
    status: int
    words: tuple

    @property
    def ok(self):
        return self.status & 0x7F == STATUS_OK

    @property
    def duplicate(self):
        return bool(self.status & FLAG_DUPLICATE)


def response_length(header):
    """Total frame length given at least the first 4 bytes of a response."""
    return 4 + 4 * header[3] + 2


def decode_response(frame):
    """Decode a complete response frame; raise :class:`FrameError` saying what is wrong."""
    frame = bytes(frame)
    if len(frame) < 6:
        raise FrameError(f"response too short: {len(frame)} bytes")
    if frame[0] != SOF_RESPONSE:
        raise FrameError(f"response start byte must be 0x{SOF_RESPONSE:02x}, "
                         f"not 0x{frame[0]:02x}")
    if len(frame) != response_length(frame):
        raise FrameError(f"response length {len(frame)} does not match count {frame[3]}")
    body, crc = frame[1:-2], int.from_bytes(frame[-2:], "little")
    if crc16(body) != crc:
        raise FrameError(f"response CRC 0x{crc:04x} does not match 0x{crc16(body):04x}")
    words = tuple(int.from_bytes(frame[4 + 4 * i:8 + 4 * i], "little") for i in range(frame[3]))
    return Response(seq=frame[1], status=frame[2], words=words)


def _crc16_step(m, crc, byte, name):
    """Return a signal holding the CRC-16/CCITT-FALSE register after shifting in ``byte``.

    Each bit step gets its own combinational signal so that the expression stays linear in size.
    """
    for i in reversed(range(8)):
        nxt = Signal(16, name=f"{name}_b{i}")
        fb = crc[15] ^ byte[i]
        m.d.comb += nxt.eq((crc << 1)[:16] ^ (fb.replicate(16) & 0x1021))
        crc = nxt
    return crc


class RegBridge(wiring.Component):
    """Byte-stream register bridge (see the module docstring for the protocol).

    Parameters
    ----------
    map_size : int
        Number of mapped words; requests touching ``addr >= map_size`` get ``STATUS_BAD_ADDR``.
    timeout_cycles : int
        Idle cycles inside a frame after which it is dropped as truncated (>= 2).
    read_latency : int
        Cycles from ``bus.r_en`` to valid ``bus.r_data`` (1 for a :class:`RegisterBank`, 2 for a
        bank whose read multiplexer has a pipeline register, as a big node's). Each read word
        takes ``read_latency - 1`` more cycles; the bytes sent do not change.

    Members
    -------
    rx : In(stream.Signature(8))
        Request bytes.
    tx : Out(stream.Signature(8))
        Response bytes.
    bus : Out(RegBus)
        Register bank access (read latency ``read_latency``).
    crc_errors, truncated, skipped_bytes, frames, duplicates : Out(32)
        Wrapping event counters; exposed as read-only registers by :meth:`registers`.
    """

    def __init__(self, *, map_size, timeout_cycles=4096, read_latency=1):
        if isinstance(read_latency, bool) or read_latency not in (1, 2, 3, 4):
            raise ValueError(f"read_latency must be 1, 2, 3 or 4, not {read_latency!r}")
        self.read_latency = read_latency
        if not isinstance(map_size, int) or not 1 <= map_size <= 1 << ADDR_BITS:
            raise ValueError(f"map_size must be an integer in [1, {1 << ADDR_BITS}], "
                             f"not {map_size!r}")
        if not isinstance(timeout_cycles, int) or timeout_cycles < 2:
            raise ValueError(f"timeout_cycles must be an integer >= 2, not {timeout_cycles!r}")
        self.map_size = map_size
        self.timeout_cycles = timeout_cycles
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "bus": Out(RegBus),
            **{name: Out(32) for name in self.COUNTERS},
        })

    COUNTERS = ("crc_errors", "truncated", "skipped_bytes", "frames", "duplicates")

    @staticmethod
    def registers():
        docs = {"crc_errors": "Request frames dropped for a CRC mismatch.",
                "truncated": "Request frames dropped after an idle timeout inside the frame.",
                "skipped_bytes": "Bytes outside any frame that were not a start byte.",
                "frames": "Well-formed request frames answered.",
                "duplicates": "Retried writes recognised by sequence number and not re-applied."}
        return [Reg(name, 32, Access.R, doc=docs[name]) for name in RegBridge.COUNTERS]

    def elaborate(self, platform):
        m = Module()
        rx, tx, bus = self.rx, self.tx, self.bus

        m.submodules.wbuf = wbuf = Memory(shape=32, depth=MAX_WRITE_WORDS, init=[])
        wr = wbuf.write_port()
        rd = wbuf.read_port(domain="comb")

        crc = Signal(16)
        crc_rx = Signal(16)
        seq = Signal(8)
        cmd = Signal(8)
        addr = Signal(ADDR_BITS)
        count = Signal(8)
        idx = Signal(range(4 * 256 + 1))      # byte index within a phase
        word = Signal(32)                     # assembling / sending word
        widx = Signal(8)                      # word index for exec / read
        status = Signal(8)
        last_wseq = Signal(8)
        last_wvalid = Signal()
        idle = Signal(range(self.timeout_cycles + 1))

        counters = {name: getattr(self, name) for name in self.COUNTERS}

        def bump(name):
            return counters[name].eq(counters[name] + 1)

        byte_in = rx.valid & rx.ready
        in_frame = Signal()
        with m.If(in_frame & ~byte_in):
            m.d.sync += idle.eq(idle + 1)
        with m.Else():
            m.d.sync += idle.eq(0)
        timed_out = in_frame & (idle == self.timeout_cycles - 1) & ~byte_in

        crc_next_in = _crc16_step(m, crc, rx.payload, "crc_in")
        crc_next_out = _crc16_step(m, crc, tx.payload, "crc_out")
        nbytes_out = Signal(2)

        end = Signal(ADDR_BITS + 9)
        m.d.comb += end.eq(addr + count)

        m.d.comb += [wr.addr.eq(idx[2:]), wr.data.eq(word), rd.addr.eq(widx)]

        @contextlib.contextmanager
        def receiving():
            """Body of a receive state: runs on a byte; drops the frame when bytes stop."""
            m.d.comb += [rx.ready.eq(1), in_frame.eq(1)]
            with m.If(timed_out):
                m.d.sync += bump("truncated")
                m.next = "HUNT"
            with m.Elif(rx.valid):
                yield

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    with m.If(rx.payload == SOF_REQUEST):
                        m.d.sync += [crc.eq(0xFFFF), idx.eq(0)]
                        m.next = "HEADER"
                    with m.Else():
                        m.d.sync += bump("skipped_bytes")

            with m.State("HEADER"):
                with receiving():
                    m.d.sync += [crc.eq(crc_next_in), idx.eq(idx + 1)]
                    with m.Switch(idx):
                        with m.Case(0):
                            m.d.sync += seq.eq(rx.payload)
                        with m.Case(1):
                            m.d.sync += cmd.eq(rx.payload)
                        with m.Case(2):
                            m.d.sync += addr[:8].eq(rx.payload)
                        with m.Case(3):
                            m.d.sync += addr[8:].eq(rx.payload)
                        with m.Case(4):
                            m.d.sync += [count.eq(rx.payload), idx.eq(0)]
                            with m.If((cmd == CMD_WRITE) & (rx.payload != 0)):
                                m.next = "DATA"
                            with m.Else():
                                m.next = "CRC"

            with m.State("DATA"):
                with receiving():
                    m.d.sync += [crc.eq(crc_next_in), idx.eq(idx + 1),
                                 word.eq((word >> 8) | (rx.payload << 24))]
                    m.d.comb += wr.en.eq((idx[:2] == 3) & (idx[2:] < MAX_WRITE_WORDS))
                    m.d.comb += wr.data.eq((word >> 8) | (rx.payload << 24))
                    with m.If(idx == (count << 2) - 1):
                        m.d.sync += idx.eq(0)
                        m.next = "CRC"

            with m.State("CRC"):
                with receiving():
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 0):
                        m.d.sync += crc_rx[:8].eq(rx.payload)
                    with m.Else():
                        m.d.sync += [crc_rx[8:].eq(rx.payload), idx.eq(0)]
                        m.next = "CHECK"

            with m.State("CHECK"):
                with m.If(crc_rx != crc):
                    m.d.sync += bump("crc_errors")
                    m.next = "HUNT"
                with m.Else():
                    m.d.sync += [bump("frames"), widx.eq(0)]
                    valid_cmd = (cmd == CMD_READ) | (cmd == CMD_WRITE) | (cmd == CMD_BURST_READ)
                    bad_count = (count == 0) | ((cmd == CMD_READ) & (count != 1)) | \
                        ((cmd == CMD_WRITE) & (count > MAX_WRITE_WORDS))
                    dup = (cmd == CMD_WRITE) & last_wvalid & (last_wseq == seq)
                    with m.If(~valid_cmd):
                        m.d.sync += [status.eq(STATUS_BAD_CMD), last_wvalid.eq(0)]
                        m.next = "SEND_HEADER"
                    with m.Elif(bad_count):
                        m.d.sync += [status.eq(STATUS_BAD_COUNT), last_wvalid.eq(0)]
                        m.next = "SEND_HEADER"
                    with m.Elif(end > self.map_size):
                        m.d.sync += [status.eq(STATUS_BAD_ADDR), last_wvalid.eq(0)]
                        m.next = "SEND_HEADER"
                    with m.Elif(dup):
                        m.d.sync += [status.eq(STATUS_OK | FLAG_DUPLICATE), bump("duplicates")]
                        m.next = "SEND_HEADER"
                    with m.Elif(cmd == CMD_WRITE):
                        m.d.sync += [status.eq(STATUS_OK), last_wvalid.eq(1),
                                     last_wseq.eq(seq)]
                        m.next = "WRITE"
                    with m.Else():
                        m.d.sync += [status.eq(STATUS_OK), last_wvalid.eq(0)]
                        m.next = "SEND_HEADER"

            with m.State("WRITE"):
                m.d.comb += [bus.addr.eq(addr + widx), bus.w_en.eq(1), bus.w_data.eq(rd.data)]
                m.d.sync += widx.eq(widx + 1)
                with m.If(widx == count - 1):
                    m.d.sync += widx.eq(0)
                    m.next = "SEND_HEADER"

            # Response: header bytes (SOF, seq, status, count), then words, then CRC.
            data_words = Signal(8)
            is_read = ((cmd == CMD_READ) | (cmd == CMD_BURST_READ)) & (status == STATUS_OK)
            m.d.comb += data_words.eq(is_read.replicate(8) & count)

            with m.State("SEND_HEADER"):
                with m.Switch(idx):
                    with m.Case(0):
                        m.d.comb += tx.payload.eq(SOF_RESPONSE)
                    with m.Case(1):
                        m.d.comb += tx.payload.eq(seq)
                    with m.Case(2):
                        m.d.comb += tx.payload.eq(status)
                    with m.Default():
                        m.d.comb += tx.payload.eq(data_words)
                m.d.comb += tx.valid.eq(1)
                with m.If(tx.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 0):
                        m.d.sync += crc.eq(0xFFFF)
                    with m.Else():
                        m.d.sync += crc.eq(crc_next_out)
                    with m.If(idx == 3):
                        m.d.sync += idx.eq(0)
                        with m.If(data_words != 0):
                            m.next = "READ_ISSUE"
                        with m.Else():
                            m.next = "SEND_CRC"

            with m.State("READ_ISSUE"):
                m.d.comb += [bus.addr.eq(addr + widx), bus.r_en.eq(1)]
                m.next = "READ_LATCH" if self.read_latency == 1 else "READ_WAIT1"

            for k in range(1, self.read_latency):
                with m.State(f"READ_WAIT{k}"):
                    m.next = "READ_LATCH" if k == self.read_latency - 1 else f"READ_WAIT{k + 1}"

            with m.State("READ_LATCH"):
                m.d.sync += [word.eq(bus.r_data), nbytes_out.eq(0)]
                m.next = "SEND_WORD"

            with m.State("SEND_WORD"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(word[:8])]
                with m.If(tx.ready):
                    m.d.sync += [crc.eq(crc_next_out), word.eq(word >> 8),
                                 nbytes_out.eq(nbytes_out + 1)]
                    with m.If(nbytes_out == 3):
                        m.d.sync += widx.eq(widx + 1)
                        with m.If(widx == data_words - 1):
                            m.next = "SEND_CRC"
                        with m.Else():
                            m.next = "READ_ISSUE"

            with m.State("SEND_CRC"):
                m.d.comb += [tx.valid.eq(1),
                             tx.payload.eq(crc.word_select(idx[0], 8))]
                with m.If(tx.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 1):
                        m.d.sync += idx.eq(0)
                        m.next = "HUNT"
        return m


class BridgeModel:
    """Byte-exact model of :class:`RegBridge` over a :class:`~combkey.gateware.regs.BankModel`.

    Drive it with :meth:`byte` (one request byte accepted) and :meth:`idle` (cycles with no
    byte); :attr:`out` collects response bytes. The model assumes the response consumer is always
    ready and the requests are spaced so that each response completes before the next request's
    first byte (the hardware does not accept bytes while it answers; the bytes wait upstream).
    """

    def __init__(self, bank, *, map_size, timeout_cycles=4096):
        self.bank = bank
        self.map_size = map_size
        self.timeout_cycles = timeout_cycles
        self.counters = dict.fromkeys(RegBridge.COUNTERS, 0)
        self.out = bytearray()
        self._frame = None          # bytes of the frame after the start byte, or None
        self._idle = 0
        self._last_wseq = None

    def _need(self):
        f = self._frame
        if len(f) < 5:
            return 5 + 2
        n = f[4] * 4 if f[1] == CMD_WRITE else 0
        return 5 + n + 2

    def idle(self, cycles):
        if self._frame is None:
            return
        self._idle += cycles
        if self._idle >= self.timeout_cycles:
            self._bump("truncated")
            self._frame = None

    def byte(self, b):
        if self._frame is None:
            if b == SOF_REQUEST:
                self._frame = bytearray()
                self._idle = 0
            else:
                self._bump("skipped_bytes")
            return
        self._idle = 0
        self._frame.append(b)
        if len(self._frame) == self._need():
            frame, self._frame = bytes(self._frame), None
            self._execute(frame)

    def feed(self, data):
        for b in data:
            self.byte(b)

    def _bump(self, name):
        self.counters[name] = (self.counters[name] + 1) & 0xFFFF_FFFF

    def _execute(self, frame):
        body, crc = frame[:-2], int.from_bytes(frame[-2:], "little")
        if crc16(body) != crc:
            self._bump("crc_errors")
            return
        self._bump("frames")
        seq, cmd, addr, count = body[0], body[1], body[2] | body[3] << 8, body[4]
        words = []
        if cmd not in (CMD_READ, CMD_WRITE, CMD_BURST_READ):
            status, self._last_wseq = STATUS_BAD_CMD, None
        elif count == 0 or (cmd == CMD_READ and count != 1) or \
                (cmd == CMD_WRITE and count > MAX_WRITE_WORDS):
            status, self._last_wseq = STATUS_BAD_COUNT, None
        elif addr + count > self.map_size:
            status, self._last_wseq = STATUS_BAD_ADDR, None
        elif cmd == CMD_WRITE and self._last_wseq == seq:
            status = STATUS_OK | FLAG_DUPLICATE
            self._bump("duplicates")
        elif cmd == CMD_WRITE:
            status, self._last_wseq = STATUS_OK, seq
            for i in range(count):
                self.bank.write(addr + i, int.from_bytes(body[5 + 4 * i:9 + 4 * i], "little"))
        else:
            status, self._last_wseq = STATUS_OK, None
            words = [self.bank.read(addr + i) for i in range(count)]
        rsp = bytearray([seq, status, len(words)])
        for w in words:
            rsp += w.to_bytes(4, "little")
        self.out += bytes([SOF_RESPONSE]) + rsp + crc16(rsp).to_bytes(2, "little")

