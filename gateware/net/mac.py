"""Ethernet MAC: RGMII I/O, preamble/SFD, FCS (CRC-32) generation and checking.

Byte streams
------------
Every layer of :mod:`combkey.gateware.net` passes frames as ``stream.Signature(Octet)``: one byte
per transfer with framing flags.

=========  =====  ================================================================================
field      bits   meaning
=========  =====  ================================================================================
``data``   8      the byte (Ethernet order: destination MAC first)
``first``  1      first byte of a frame
``last``   1      last byte of a frame (the FCS is never part of the stream)
``err``    2      :class:`RxError`, valid with ``last`` on the receive side; ignored by the sender
=========  =====  ================================================================================

A transmitter must offer a frame's bytes on consecutive cycles once its first byte is accepted
(the wire cannot wait); a gap is an underrun: the frame goes out with a corrupted FCS and
``tx_underruns`` counts it.

Components
----------
:class:`MacRx` (domain ``domain``) : GMII bytes in (``rx_dv``, ``rx_er``, ``rxd``), ``o:
    Out(stream.Signature(Octet))`` out. Strips the preamble and SFD, checks the FCS, and flags a
    frame shorter than 64 bytes (FCS included) as :attr:`RxError.SHORT`. It has no back-pressure
    (``o.ready`` is ignored, put a FIFO behind it). Latency 5 byte times (the FCS holdback).
:class:`MacTx` (domain ``sync``) : ``i: In(stream.Signature(Octet))`` → GMII ``tx_en``,
    ``tx_er``, ``txd``. Adds 7 preamble bytes + SFD, pads to 60 bytes, appends the FCS and keeps
    a 12-byte inter-frame gap, so a frame of ``n >= 60`` bytes occupies ``n + 24`` byte times.
:class:`RGMII` : the RGMII pins (4-bit DDR data, control, clocks) to and from GMII, through
    :mod:`~combkey.gateware.net.ddr`; receive side in domain ``rx_domain`` (clocked by the PHY's
    RXC), transmit side in ``sync`` (125 MHz). ``tx_clk_mode`` chooses how TXC gets its 90°
    (2 ns) lead over the data the PHY needs: ``"delay"`` delays the TXC output by ``tx_delay_ps``
    through DELAYG, ``"domain"`` clocks the TXC DDR register from a domain ``tx90`` that the board
    provides (a PLL output at +90°; the cocotb benches drive it). ``rx_delay_ps`` delays RXD/RX_CTL
    through DELAYG when the PHY does not add its own RX clock delay (0 disables).

Models
------
:func:`crc32`, :func:`fcs` (zlib reference), :func:`mac_tx_model` (frame → wire bytes),
:func:`mac_rx_model` (wire bytes of one frame → ``(payload, RxError)``).
"""
import zlib

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib import enum as aenum
from amaranth.lib.wiring import In, Out

from .ddr import DDRInput, DDROutput, Delay, delay_taps

__all__ = ["Octet", "RxError", "PREAMBLE", "MIN_FRAME", "IFG", "crc32_step", "crc32", "fcs",
           "CRC_RESIDUE", "MacRx", "MacTx", "RGMII", "mac_tx_model", "mac_rx_model",
           "wire_time"]

#: Preamble + SFD bytes that precede every frame on the wire.
PREAMBLE = bytes([0x55] * 7 + [0xD5])
#: Minimum frame length without the FCS (shorter frames are padded with zeros).
MIN_FRAME = 60
#: Inter-frame gap in byte times.
IFG = 12
#: Register value after running the CRC over a frame and its correct FCS.
CRC_RESIDUE = 0xDEBB20E3


class RxError(aenum.Enum, shape=2):
    """Receive status carried with ``last``."""

    NONE = 0
    FCS = 1       # FCS mismatch or rx_er during the frame
    SHORT = 2     # fewer than 64 bytes including the FCS


class Octet(data.Struct):
    """One byte of a frame with its framing flags (see the module docstring)."""

    data: 8
    first: 1
    last: 1
    err: RxError


def _crc32_matrix():
    """For each output bit of one byte step: (mask of register bits, mask of data bits)."""
    def step(crc, byte):
        for i in range(8):
            fb = (crc ^ (byte >> i)) & 1
            crc = (crc >> 1) ^ (0xEDB88320 if fb else 0)
        return crc
    cols_c = [step(1 << k, 0) for k in range(32)]
    cols_d = [step(0, 1 << k) for k in range(8)]
    return [(sum(1 << k for k in range(32) if cols_c[k] >> j & 1),
             sum(1 << k for k in range(8) if cols_d[k] >> j & 1)) for j in range(32)]


_CRC32_MATRIX = _crc32_matrix()


def crc32_step(crc, byte):
    """Amaranth expression: reflected CRC-32 (poly 0xEDB88320) register after ``byte``.

    Built as one XOR per output bit from the step's linear map (computed in Python)."""
    bits = []
    for mc, md in _CRC32_MATRIX:
        terms = [crc[k] for k in range(32) if mc >> k & 1] + \
            [byte[k] for k in range(8) if md >> k & 1]
        acc = terms[0]
        for t in terms[1:]:
            acc = acc ^ t
        bits.append(acc)
    return Cat(*bits)


def crc32(data_bytes):
    """CRC-32 of IEEE 802.3 (zlib) of ``data_bytes``."""
    return zlib.crc32(bytes(data_bytes)) & 0xFFFF_FFFF


def fcs(frame):
    """Return the 4 FCS bytes (as sent on the wire) for ``frame``."""
    return crc32(frame).to_bytes(4, "little")


def wire_time(frame_len):
    """Byte times one frame of ``frame_len`` bytes (no FCS) occupies on the wire with its gap."""
    return len(PREAMBLE) + max(frame_len, MIN_FRAME) + 4 + IFG


def mac_tx_model(frame):
    """Wire bytes (preamble, padded frame, FCS) that :class:`MacTx` sends for ``frame``."""
    frame = bytes(frame) + bytes(max(0, MIN_FRAME - len(frame)))
    return PREAMBLE + frame + fcs(frame)


def mac_rx_model(wire):
    """Decode the bytes of one ``rx_dv`` burst as :class:`MacRx` does.

    Returns ``(payload, err)`` with ``err`` an :class:`RxError`, or ``None`` when no SFD is
    found (the hardware emits nothing for such a burst).
    """
    wire = bytes(wire)
    i = 0
    while i < len(wire) and wire[i] == 0x55:
        i += 1
    if i >= len(wire) or wire[i] != 0xD5:
        return None
    body = wire[i + 1:]
    if len(body) < 5:
        return b"\x00", RxError.SHORT
    payload = body[:-4]
    if len(body) < MIN_FRAME + 4:
        return payload, RxError.SHORT
    if zlib.crc32(body) & 0xFFFF_FFFF != 0x2144DF1C:
        return payload, RxError.FCS
    return payload, RxError.NONE


class MacRx(wiring.Component):
    """GMII receiver: preamble/SFD strip and FCS check (see the module docstring).

    Members
    -------
    rx_dv, rx_er : In(1)
    rxd : In(8)
    o : Out(stream.Signature(Octet))
        No back-pressure.
    """

    def __init__(self, *, domain="sync"):
        self.domain = domain
        super().__init__({"rx_dv": In(1), "rx_er": In(1), "rxd": In(8),
                          "o": Out(stream.Signature(Octet))})

    def elaborate(self, platform):
        m = Module()
        d = m.d[self.domain]
        hold = [Signal(8, name=f"hold{i}") for i in range(5)]   # hold[4]: oldest
        count = Signal(range(MIN_FRAME + 6))                    # saturating byte count
        crc = Signal(32)
        bad = Signal()

        d += self.o.valid.eq(0)
        with m.FSM(domain=self.domain):
            with m.State("IDLE"):
                with m.If(self.rx_dv & (self.rxd == 0xD5)):
                    d += [count.eq(0), crc.eq(0xFFFF_FFFF), bad.eq(self.rx_er)]
                    m.next = "DATA"
                with m.Elif(self.rx_dv & (self.rxd != 0x55)):
                    m.next = "SKIP"
            with m.State("SKIP"):
                with m.If(~self.rx_dv):
                    m.next = "IDLE"
            with m.State("DATA"):
                with m.If(self.rx_dv):
                    d += [hold[0].eq(self.rxd), crc.eq(crc32_step(crc, self.rxd)),
                          bad.eq(bad | self.rx_er)]
                    d += [hold[i + 1].eq(hold[i]) for i in range(4)]
                    with m.If(count != MIN_FRAME + 5):
                        d += count.eq(count + 1)
                    with m.If(count >= 5):
                        d += [self.o.valid.eq(1), self.o.payload.data.eq(hold[4]),
                              self.o.payload.first.eq(count == 5),
                              self.o.payload.last.eq(0), self.o.payload.err.eq(RxError.NONE)]
                with m.Else():
                    err = Signal(RxError)
                    with m.If(count < MIN_FRAME + 4):
                        m.d.comb += err.eq(RxError.SHORT)
                    with m.Elif(bad | (crc != CRC_RESIDUE)):
                        m.d.comb += err.eq(RxError.FCS)
                    with m.Else():
                        m.d.comb += err.eq(RxError.NONE)
                    with m.If(count < 5):
                        d += self.o.payload.data.eq(0)
                    with m.Else():
                        d += self.o.payload.data.eq(hold[4])
                    d += [self.o.valid.eq(1), self.o.payload.first.eq(count <= 5),
                          self.o.payload.last.eq(1), self.o.payload.err.eq(err)]
                    m.next = "IDLE"
        return m


class MacTx(wiring.Component):
    """GMII transmitter: preamble, padding, FCS, inter-frame gap (see the module docstring).

    Members
    -------
    i : In(stream.Signature(Octet))
    tx_en, tx_er : Out(1)
    txd : Out(8)
    tx_underruns : Out(32)
        Frames whose source stopped offering bytes mid-frame (sent with a corrupted FCS).
    """

    def __init__(self):
        super().__init__({"i": In(stream.Signature(Octet)), "tx_en": Out(1), "tx_er": Out(1),
                          "txd": Out(8), "tx_underruns": Out(32)})

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(max(IFG, len(PREAMBLE), MIN_FRAME) + 1))
        crc = Signal(32)
        fcs_reg = Signal(32)
        spoil = Signal()

        m.d.sync += [self.tx_en.eq(0), self.tx_er.eq(0), self.txd.eq(0)]

        def send(byte):
            return [self.tx_en.eq(1), self.txd.eq(byte)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.i.valid):
                    m.d.sync += [count.eq(0), spoil.eq(0)]
                    m.next = "PREAMBLE"
            with m.State("PREAMBLE"):
                m.d.sync += send(Const(PREAMBLE[0]) | (count == 7).replicate(8) & 0x80)
                m.d.sync += count.eq(count + 1)
                with m.If(count == 7):
                    m.d.sync += [count.eq(0), crc.eq(0xFFFF_FFFF)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += send(self.i.payload.data)
                    m.d.sync += crc.eq(crc32_step(crc, self.i.payload.data))
                    with m.If(count != MIN_FRAME):
                        m.d.sync += count.eq(count + 1)
                    with m.If(self.i.payload.last):
                        with m.If(count < MIN_FRAME - 1):
                            m.next = "PAD"
                        with m.Else():
                            m.d.sync += count.eq(0)
                            m.next = "FCS_LOAD"
                with m.Else():
                    # Underrun: finish the frame now with a spoilt FCS so the receiver drops it.
                    m.d.sync += [self.tx_underruns.eq(self.tx_underruns + 1), spoil.eq(1)]
                    m.d.sync += [self.tx_en.eq(1), self.tx_er.eq(1)]
                    m.d.sync += count.eq(0)
                    m.next = "UNDERRUN"
            with m.State("UNDERRUN"):
                # Drain the rest of the source's frame without sending it.
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid & self.i.payload.last):
                    m.next = "FCS_LOAD"
            with m.State("PAD"):
                m.d.sync += send(0)
                m.d.sync += [crc.eq(crc32_step(crc, Const(0, 8))), count.eq(count + 1)]
                with m.If(count == MIN_FRAME - 1):
                    m.d.sync += count.eq(0)
                    m.next = "FCS_LOAD"
            with m.State("FCS_LOAD"):
                # The FCS is the complement of the register, sent least significant byte first.
                value = ~crc ^ spoil.replicate(32)
                m.d.sync += [send(value[:8]), fcs_reg.eq(value >> 8), count.eq(1)]
                m.next = "FCS"
            with m.State("FCS"):
                m.d.sync += [send(fcs_reg[:8]), fcs_reg.eq(fcs_reg >> 8), count.eq(count + 1)]
                with m.If(count == 3):
                    m.d.sync += count.eq(0)
                    m.next = "IFG"
            with m.State("IFG"):
                m.d.sync += count.eq(count + 1)
                with m.If(count == IFG - 2):
                    m.next = "IDLE"
        return m


class RGMII(wiring.Component):
    """RGMII pins ↔ GMII (see the module docstring).

    Members
    -------
    rx_clk : In(1)        PHY RXC (the board also clocks domain ``rx_domain`` from it).
    rx_ctl : In(1)
    rxd : In(4)
    tx_clk : Out(1)       TXC to the PHY.
    tx_ctl : Out(1)
    txd : Out(4)
    gmii_rx_dv, gmii_rx_er : Out(1); gmii_rxd : Out(8)   in ``rx_domain``, 2 RXC cycles late.
    gmii_tx_en, gmii_tx_er : In(1); gmii_txd : In(8)     in ``sync``, on the wire 1 cycle later.
    """

    def __init__(self, *, rx_domain="eth_rx", tx_clk_mode="domain", tx_delay_ps=2000,
                 rx_delay_ps=0):
        if tx_clk_mode not in ("delay", "domain"):
            raise ValueError(f"tx_clk_mode must be 'delay' or 'domain', not {tx_clk_mode!r}")
        self.rx_domain = rx_domain
        self.tx_clk_mode = tx_clk_mode
        self.tx_taps = delay_taps(tx_delay_ps)
        self.rx_taps = delay_taps(rx_delay_ps)
        super().__init__({
            "rx_clk": In(1), "rx_ctl": In(1), "rxd": In(4),
            "tx_clk": Out(1), "tx_ctl": Out(1), "txd": Out(4),
            "gmii_rx_dv": Out(1), "gmii_rx_er": Out(1), "gmii_rxd": Out(8),
            "gmii_tx_en": In(1), "gmii_tx_er": In(1), "gmii_txd": In(8),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx_delay = rx_delay = Delay(5, taps=self.rx_taps)
        m.submodules.rx_ddr = rx_ddr = DDRInput(5, domain=self.rx_domain)
        m.d.comb += [rx_delay.i.eq(Cat(self.rxd, self.rx_ctl)), rx_ddr.d.eq(rx_delay.o)]
        m.d[self.rx_domain] += [
            self.gmii_rxd.eq(Cat(rx_ddr.q0[:4], rx_ddr.q1[:4])),
            self.gmii_rx_dv.eq(rx_ddr.q0[4]),
            self.gmii_rx_er.eq(rx_ddr.q0[4] ^ rx_ddr.q1[4]),
        ]

        m.submodules.tx_ddr = tx_ddr = DDROutput(5, domain="sync")
        m.d.comb += [
            tx_ddr.d0.eq(Cat(self.gmii_txd[:4], self.gmii_tx_en)),
            tx_ddr.d1.eq(Cat(self.gmii_txd[4:], self.gmii_tx_en ^ self.gmii_tx_er)),
            self.txd.eq(tx_ddr.q[:4]), self.tx_ctl.eq(tx_ddr.q[4]),
        ]
        if self.tx_clk_mode == "domain":
            m.submodules.txc_ddr = txc_ddr = DDROutput(1, domain="tx90")
            m.d.comb += [txc_ddr.d0.eq(1), txc_ddr.d1.eq(0), self.tx_clk.eq(txc_ddr.q)]
        else:
            m.submodules.txc_ddr = txc_ddr = DDROutput(1, domain="sync")
            m.submodules.txc_delay = txc_delay = Delay(1, taps=self.tx_taps)
            m.d.comb += [txc_ddr.d0.eq(1), txc_ddr.d1.eq(0), txc_delay.i.eq(txc_ddr.q),
                         self.tx_clk.eq(txc_delay.o)]
        return m


