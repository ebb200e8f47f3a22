"""ARP, IPv4, ICMP echo and UDP for a node: register bridge port and record stream port.

:class:`NetStack` sits between the MAC (:mod:`combkey.gateware.net.mac`) and the node. It takes
received frames as ``stream.Signature(Octet)`` (always ready but for one cycle after each
frame) and offers frames to send on another such stream. :class:`NetModel` is its frame-level
Python model: the same frames in give the same frames out and the same counters.

Addresses and ports
-------------------
``mac`` (48 bits, first byte on the wire most significant), ``ip`` (32 bits, first octet most
significant), ``reg_port`` and ``stream_port`` are inputs initialised from the constructor
parameters and exposed as RW registers by :meth:`NetStack.registers`.

What is answered
----------------
* ARP request (Ethernet broadcast or our MAC) for our IP → ARP reply.
* ICMP echo request to our MAC and IP → echo reply with the same identifier, sequence and data.
* UDP to ``reg_port``: the datagram payload (one register-bridge request frame,
  :mod:`combkey.gateware.bridge`) is fed byte by byte into ``reg_rx`` (to the node's ``rx``); the
  bytes coming back on ``reg_tx`` are collected until the bridge response is complete by its own
  framing (``6 + 4 * count`` bytes, count in the fourth byte) and sent back in one datagram from
  ``reg_port`` to the sender's port. No complete response within ``reply_timeout`` idle cycles
  (e.g. the bridge dropped a request with a bad CRC): no datagram, ``reg_no_reply`` counts it.
  A request datagram from the same source port as the previous one whose bridge sequence number
  (payload byte 1) is 1 to 127 behind the previous one's (modulo 256) is a late, reordered copy
  of an old request: it is dropped and counted in ``stale`` so that it cannot apply an old write
  after a newer one. Equal sequence numbers pass (the bridge answers a retried write without
  applying it again); another source port starts a new window (a new host session).
* UDP to ``stream_port``: the first payload byte is a command, :data:`STREAM_START` (the sender's
  MAC, IP and port become the destination of the record stream, the stream sequence and its
  counters restart from 0) or :data:`STREAM_STOP`.

The IPv4 header must have no options and no fragmentation; UDP checksums are not checked (the
bridge frames carry their own CRC-16) and are sent as 0; sent IPv4 datagrams have ID 0, DF set,
TTL 64. Received frames must fit the 2048-byte receive buffer.

The stream of records
---------------------
``records: In(stream.Signature(64))`` feeds a FIFO of ``fifo_depth`` records while a subscriber
exists (``records.ready`` is low otherwise, so the source keeps its own loss count, which it
gives on ``upstream_dropped``). A record offered while the FIFO is full is dropped and counted
(``fifo_dropped``). A datagram is sent when ``records_per_datagram`` records are queued, or
when records have waited ``flush_cycles`` cycles. Datagram payload: a :class:`StreamHeader`
(20 bytes, little endian) followed by ``count`` records of 8 bytes, little endian. With the
default 180 records a datagram carries 1440 record bytes in 1540 byte times on the wire
(93.5 % of line rate; at 1 Gbit/s 11.7 M records/s).

Drop counters (all 32-bit, wrapping; R registers)
------------------------------------------------
``bad_fcs``, ``truncated`` (runt, or shorter than its headers or IP/UDP lengths say),
``bad_ip_checksum``, ``foreign_mac``, ``foreign_ip``, ``wrong_port`` (UDP to another port),
``unsupported`` (other EtherType, IP protocol, IP options or fragments, non-request ARP or
ICMP), ``busy`` (a frame needing a reply while the previous reply is still in progress),
``reg_no_reply``, ``stale``, ``fifo_dropped``; and the event counters ``rx_frames`` (frames
accepted), ``arp_replies``, ``icmp_replies``, ``reg_replies``, ``stream_datagrams``.

Latency: the decision is taken two cycles after the last byte of a frame (``rx`` is not ready
for three cycles); a reply's first byte is offered 10 cycles later (ARP, ICMP: the IPv4
checksum pipeline) or 8 cycles after the bridge response is complete (UDP). Datagrams of records
are built while the MAC sends the previous one's FCS and gap, so back-to-back datagrams leave
no idle time beyond the inter-frame gap.
"""
import dataclasses

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..regs import Access, Reg
from .mac import Octet, RxError

__all__ = ["StreamHeader", "STREAM_HEADER_BYTES", "STREAM_START", "STREAM_STOP", "NetStack",
           "NetModel", "COUNTERS", "ip_checksum", "eth_header", "ipv4_header", "udp_frame",
           "arp_request", "icmp_echo_request", "SkidBuffer", "decode_stream_datagram",
           "mac_bytes", "ip_bytes",
           "DEFAULT_MAC", "DEFAULT_IP", "REG_PORT", "STREAM_PORT"]

ETH_ARP = 0x0806
ETH_IPV4 = 0x0800
PROTO_ICMP = 1
PROTO_UDP = 17
STREAM_START = 0x01
STREAM_STOP = 0x00
BUFFER_BYTES = 2048
DEFAULT_MAC = 0x02_C0_4B_00_00_01
DEFAULT_IP = 0x0A_00_00_02          # 10.0.0.2
REG_PORT = 7001
STREAM_PORT = 7002
BROADCAST = (1 << 48) - 1

COUNTERS = ("rx_frames", "bad_fcs", "truncated", "bad_ip_checksum", "foreign_mac", "foreign_ip",
            "wrong_port", "unsupported", "busy", "reg_no_reply", "stale", "fifo_dropped",
            "arp_replies", "icmp_replies", "reg_replies", "stream_datagrams")
_COUNTER_DOCS = {
    "rx_frames": "Frames received with a good FCS.",
    "bad_fcs": "Frames dropped for an FCS mismatch or a PHY receive error.",
    "truncated": "Frames dropped as runts or shorter than their headers or lengths say.",
    "bad_ip_checksum": "IPv4 datagrams to us dropped for a header checksum mismatch.",
    "foreign_mac": "Frames dropped for another destination MAC (or broadcast IPv4).",
    "foreign_ip": "ARP requests or IPv4 datagrams for another IP address.",
    "wrong_port": "UDP datagrams to a port that is neither the register nor the stream port.",
    "unsupported": "Frames of another EtherType, IP protocol, with IP options or fragments.",
    "busy": "Frames needing a reply dropped while the previous reply was in progress.",
    "reg_no_reply": "Register datagrams after which the bridge sent no complete response.",
    "stale": "Register datagrams dropped as late copies of older requests (sequence behind).",
    "fifo_dropped": "Records dropped because the stream FIFO was full (since the last start).",
    "arp_replies": "ARP replies sent.",
    "icmp_replies": "ICMP echo replies sent.",
    "reg_replies": "Register response datagrams sent.",
    "stream_datagrams": "Datagrams of records sent (since the last start).",
}


class StreamHeader(data.Struct):
    """Header of a record datagram (20 bytes, little endian, first field first on the wire).

    ``seq``: datagram number since the last start (wraps at 2**32); ``first_index``: number of
    records sent before this datagram since the last start; ``fifo_dropped``: records dropped at
    the stream FIFO since the last start; ``upstream_dropped``: the record source's own loss
    count (as given on ``upstream_dropped``); ``count``: records in this datagram; ``flags``:
    bit 0 is always 1 (version 1).
    """

    seq: 32
    first_index: 32
    fifo_dropped: 32
    upstream_dropped: 32
    count: 16
    flags: 16


STREAM_HEADER_BYTES = 20


# --------------------------------------------------------------------------------------------
# Python reference codecs (used by the model, the tests and the host).

def mac_bytes(mac):
    return int(mac).to_bytes(6, "big")


def ip_bytes(ip):
    return int(ip).to_bytes(4, "big")


def ip_checksum(header):
    """Internet checksum (RFC 1071) of ``header`` bytes, as the 16-bit value to send."""
    header = bytes(header)
    if len(header) % 2:
        header += b"\0"
    s = sum(int.from_bytes(header[i:i + 2], "big") for i in range(0, len(header), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth_header(dst, src, ethertype):
    return mac_bytes(dst) + mac_bytes(src) + ethertype.to_bytes(2, "big")


def ipv4_header(src, dst, proto, payload_len, ident=0, flags=0x4000, ttl=64):
    hdr = bytearray(struct_ipv4(0x45, 20 + payload_len, ident, flags, ttl, proto, src, dst))
    hdr[10:12] = ip_checksum(hdr).to_bytes(2, "big")
    return bytes(hdr)


def struct_ipv4(vihl, total, ident, flags, ttl, proto, src, dst):
    return (bytes([vihl, 0]) + total.to_bytes(2, "big") + ident.to_bytes(2, "big")
            + flags.to_bytes(2, "big") + bytes([ttl, proto]) + b"\0\0" + ip_bytes(src)
            + ip_bytes(dst))


def udp_frame(dst_mac, src_mac, src_ip, dst_ip, sport, dport, payload):
    """An Ethernet frame (no FCS) carrying one UDP datagram with checksum 0."""
    payload = bytes(payload)
    udp = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + \
        (8 + len(payload)).to_bytes(2, "big") + b"\0\0" + payload
    return eth_header(dst_mac, src_mac, ETH_IPV4) + \
        ipv4_header(src_ip, dst_ip, PROTO_UDP, len(udp)) + udp


def arp_request(src_mac, src_ip, target_ip):
    body = bytes.fromhex("0001080006040001") + mac_bytes(src_mac) + ip_bytes(src_ip) + \
        bytes(6) + ip_bytes(target_ip)
    return eth_header(BROADCAST, src_mac, ETH_ARP) + body


def icmp_echo_request(dst_mac, src_mac, src_ip, dst_ip, ident, seq, payload):
    icmp = bytearray(bytes([8, 0, 0, 0]) + ident.to_bytes(2, "big") + seq.to_bytes(2, "big")
                     + bytes(payload))
    icmp[2:4] = ip_checksum(icmp).to_bytes(2, "big")
    return eth_header(dst_mac, src_mac, ETH_IPV4) + \
        ipv4_header(src_ip, dst_ip, PROTO_ICMP, len(icmp)) + bytes(icmp)


def decode_stream_datagram(payload):
    """Split a record datagram payload into ``(StreamHeader const, list of 64-bit records)``.

    Raises ``ValueError`` when the payload is shorter than its header or its ``count`` says.
    """
    payload = bytes(payload)
    if len(payload) < STREAM_HEADER_BYTES:
        raise ValueError(f"record datagram must hold a {STREAM_HEADER_BYTES}-byte header, "
                         f"not {len(payload)} bytes")
    hdr = StreamHeader.from_bits(int.from_bytes(payload[:STREAM_HEADER_BYTES], "little"))
    n = int(hdr.count)
    if len(payload) != STREAM_HEADER_BYTES + 8 * n:
        raise ValueError(f"record datagram length must be {STREAM_HEADER_BYTES + 8 * n} for "
                         f"count {n}, not {len(payload)}")
    body = payload[STREAM_HEADER_BYTES:]
    return hdr, [int.from_bytes(body[8 * i:8 * i + 8], "little") for i in range(n)]


def encode_stream_header(seq, first_index, fifo_dropped, upstream_dropped, count):
    value = StreamHeader.const({"seq": seq, "first_index": first_index,
                                "fifo_dropped": fifo_dropped,
                                "upstream_dropped": upstream_dropped, "count": count,
                                "flags": 1}).as_value().value
    return value.to_bytes(STREAM_HEADER_BYTES, "little")


# --------------------------------------------------------------------------------------------
# Frame-level model.

@dataclasses.dataclass
class NetModel:
    """Frame-level model of :class:`NetStack`.

    ``receive(frame, err)`` processes one received frame (no FCS) and returns the list of frames
    sent in response; ``bridge`` is a callable ``bytes -> bytes`` (e.g. feeding a
    :class:`~combkey.gateware.bridge.BridgeModel` and returning its new output); ``busy`` is the
    hardware's reply-in-progress state, which the caller sets when frames arrive back to back.
    ``stream_datagrams(records, upstream_dropped)`` returns the record datagrams the stream
    engine sends for ``records`` queued at once (no FIFO overflow).
    """

    mac: int = DEFAULT_MAC
    ip: int = DEFAULT_IP
    reg_port: int = REG_PORT
    stream_port: int = STREAM_PORT
    bridge: object = None
    records_per_datagram: int = 180

    def __post_init__(self):
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.subscriber = None           # (mac, ip, port)
        self.seq = 0
        self.first_index = 0
        self.last_reg = None             # (source port, bridge sequence number)

    def _drop(self, name):
        self.counters[name] += 1
        return []

    def receive(self, frame, err=RxError.NONE, busy=False):
        f = bytes(frame)
        if err == RxError.FCS:
            return self._drop("bad_fcs")
        if err == RxError.SHORT or len(f) < 60:
            return self._drop("truncated")
        self.counters["rx_frames"] += 1
        dst = int.from_bytes(f[0:6], "big")
        src = int.from_bytes(f[6:12], "big")
        etype = int.from_bytes(f[12:14], "big")
        if dst != self.mac and dst != BROADCAST:
            return self._drop("foreign_mac")
        if etype == ETH_ARP:
            if f[14:22] != bytes.fromhex("0001080006040001"):
                return self._drop("unsupported")
            if int.from_bytes(f[38:42], "big") != self.ip:
                return self._drop("foreign_ip")
            if busy:
                return self._drop("busy")
            sha, spa = f[22:28], f[28:32]
            self.counters["arp_replies"] += 1
            return [eth_header(int.from_bytes(sha, "big"), self.mac, ETH_ARP)
                    + bytes.fromhex("0001080006040002") + mac_bytes(self.mac)
                    + ip_bytes(self.ip) + sha + spa]
        if etype != ETH_IPV4:
            return self._drop("unsupported")
        if dst != self.mac:
            return self._drop("foreign_mac")
        if f[14] != 0x45:
            return self._drop("unsupported")
        if ip_checksum(f[14:34]) != 0:
            return self._drop("bad_ip_checksum")
        if int.from_bytes(f[30:34], "big") != self.ip:
            return self._drop("foreign_ip")
        if f[20] & 0x3F or f[21]:
            return self._drop("unsupported")
        total = int.from_bytes(f[16:18], "big")
        if total < 28 or total > len(f) - 14:
            return self._drop("truncated")
        src_ip = int.from_bytes(f[26:30], "big")
        proto = f[23]
        if proto == PROTO_ICMP:
            if f[34] != 8 or f[35] != 0:
                return self._drop("unsupported")
            if busy:
                return self._drop("busy")
            icmp = bytearray(f[34:14 + total])
            c = int.from_bytes(icmp[2:4], "big") + 0x0800
            icmp[0] = 0
            icmp[2:4] = ((c & 0xFFFF) + (c >> 16)).to_bytes(2, "big")
            self.counters["icmp_replies"] += 1
            return [eth_header(src, self.mac, ETH_IPV4)
                    + ipv4_header(self.ip, src_ip, PROTO_ICMP, len(icmp)) + bytes(icmp)]
        if proto != PROTO_UDP:
            return self._drop("unsupported")
        ulen = int.from_bytes(f[38:40], "big")
        if ulen < 8 or ulen > total - 20:
            return self._drop("truncated")
        sport = int.from_bytes(f[34:36], "big")
        dport = int.from_bytes(f[36:38], "big")
        payload = f[42:34 + ulen]
        if dport == self.stream_port:
            if not payload:
                return self._drop("truncated")
            if payload[0] == STREAM_START:
                self.subscriber = (src, src_ip, sport)
                self.seq = self.first_index = 0
                self.counters["fifo_dropped"] = self.counters["stream_datagrams"] = 0
            elif payload[0] == STREAM_STOP:
                self.subscriber = None
            else:
                return self._drop("unsupported")
            return []
        if dport != self.reg_port:
            return self._drop("wrong_port")
        if busy:
            return self._drop("busy")
        seq = payload[1] if len(payload) > 1 else 0
        if self.last_reg is not None and self.last_reg[0] == sport and \
                1 <= (self.last_reg[1] - seq) % 256 <= 127:
            return self._drop("stale")
        self.last_reg = (sport, seq)
        rsp = self.bridge(payload) if self.bridge else b""
        if len(rsp) < 4 or len(rsp) < 6 + 4 * rsp[3]:
            return self._drop("reg_no_reply")
        rsp = rsp[:6 + 4 * rsp[3]]
        self.counters["reg_replies"] += 1
        return [udp_frame(src, self.mac, self.ip, src_ip, self.reg_port, sport, rsp)]

    def stream_datagrams(self, records, upstream_dropped=0):
        out = []
        if self.subscriber is None:
            return out
        mac, ip, port = self.subscriber
        records = list(records)
        n = self.records_per_datagram
        for i in range(0, len(records), n):
            chunk = records[i:i + n]
            payload = encode_stream_header(self.seq, self.first_index,
                                           self.counters["fifo_dropped"], upstream_dropped,
                                           len(chunk))
            payload += b"".join(int(r).to_bytes(8, "little") for r in chunk)
            out.append(udp_frame(mac, self.mac, self.ip, ip, self.stream_port, port, payload))
            self.seq = (self.seq + 1) & 0xFFFF_FFFF
            self.first_index = (self.first_index + len(chunk)) & 0xFFFF_FFFF
            self.counters["stream_datagrams"] += 1
        return out


# --------------------------------------------------------------------------------------------
# Hardware.

def _be(value, nbytes):
    """Bytes of ``value`` most significant first, as a list of 8-bit expressions."""
    return [value.word_select(nbytes - 1 - i, 8) for i in range(nbytes)]


def _c16(x):
    return Const(x, 16)


def _ipv4_words(total, proto, src, dst):
    """The ten 16-bit words of our IPv4 header with a zero checksum."""
    return [_c16(0x4500), total, _c16(0), _c16(0x4000), Cat(proto, Const(64, 8)),
            _c16(0), src[16:], src[:16], dst[16:], dst[:16]]


class _Checksum:
    """Pipelined internet checksum of ten 16-bit words: ``value`` is valid :attr:`latency`
    cycles after the words settle (one two-input addition per stage, for timing)."""

    latency = 6

    def __init__(self, m, name, words):
        self.value = Signal(16, name=f"{name}_csum")
        pairs = [Signal(17, name=f"{name}_p{i}") for i in range(5)]
        for i, p in enumerate(pairs):
            m.d.sync += p.eq(words[2 * i] + words[2 * i + 1])
        a, b, c = (Signal(18, name=f"{name}_{x}") for x in "abc")
        m.d.sync += [a.eq(pairs[0] + pairs[1]), b.eq(pairs[2] + pairs[3]), c.eq(pairs[4])]
        t, c2 = Signal(19, name=f"{name}_t"), Signal(18, name=f"{name}_c2")
        m.d.sync += [t.eq(a + b), c2.eq(c)]
        total = Signal(20, name=f"{name}_sum")
        m.d.sync += total.eq(t + c2)
        f1 = Signal(17, name=f"{name}_f1")
        m.d.sync += f1.eq(total[:16] + total[16:])
        m.d.sync += self.value.eq(~(f1[:16] + f1[16:])[:16])


class SkidBuffer(wiring.Component):
    """Registered stream stage (two entries): cuts every combinational path between ``i`` and
    ``o`` and keeps one transfer per cycle (a continuous input stays continuous). Its model is
    the identity on the sequence of payloads."""

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        skid = Signal.like(self.i.payload)
        skid_valid = Signal()
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(self.o.ready | ~self.o.valid):
            m.d.sync += [self.o.valid.eq(skid_valid | self.i.valid),
                         self.o.payload.eq(Mux(skid_valid, skid, self.i.payload)),
                         skid_valid.eq(0)]
        with m.Elif(self.i.valid & self.i.ready):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m


def _byte_mux(m, index, byte_list, out):
    with m.Switch(index):
        for i, b in enumerate(byte_list):
            with m.Case(i):
                m.d.comb += out.eq(b)


class NetStack(wiring.Component):
    """ARP / IPv4 / ICMP / UDP layer (see the module docstring).

    Parameters
    ----------
    mac, ip : int
        Reset values of the ``mac`` and ``ip`` registers.
    reg_port, stream_port : int
        Reset values of the UDP port registers (1 to 65535, different).
    records_per_datagram : int
        1 to 180 records per datagram.
    fifo_depth : int
        Depth of the FIFO of records (>= records_per_datagram, a power of 2).
    flush_cycles : int
        Cycles a partial datagram's records may wait (>= 1).
    reply_timeout : int
        Idle cycles after which a missing bridge response is given up (>= 2).

    Members
    -------
    rx : In(stream.Signature(Octet))       received frames (from :class:`~.mac.MacRx`).
    tx : Out(stream.Signature(Octet))      frames to send (to :class:`~.mac.MacTx`); the
                                           consumer must take one byte per cycle once it has
                                           taken a frame's first byte (as the MAC does).
    reg_rx : Out(stream.Signature(8))      request bytes to the node's bridge.
    reg_tx : In(stream.Signature(8))       response bytes from the node's bridge.
    records : In(stream.Signature(64))     records to stream (opaque 64-bit words).
    upstream_dropped : In(32)              the record source's loss count, copied to headers.
    mac : In(48), ip : In(32), reg_port : In(16), stream_port : In(16)   RW registers.
    subscribed : Out(1)                    a stream destination is set (R register).
    <counter> : Out(32)                    one per name in :data:`COUNTERS` (R registers).
    """

    def __init__(self, *, mac=DEFAULT_MAC, ip=DEFAULT_IP, reg_port=REG_PORT,
                 stream_port=STREAM_PORT, records_per_datagram=180, fifo_depth=1024,
                 flush_cycles=12500, reply_timeout=512):
        if not isinstance(mac, int) or not 0 <= mac < 1 << 48 or mac >> 40 & 1:
            raise ValueError(f"mac must be a 48-bit unicast address, not {mac!r}")
        if not isinstance(ip, int) or not 0 < ip < 1 << 32:
            raise ValueError(f"ip must be a nonzero 32-bit address, not {ip!r}")
        for name, port in (("reg_port", reg_port), ("stream_port", stream_port)):
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise ValueError(f"{name} must be an integer in [1, 65535], not {port!r}")
        if reg_port == stream_port:
            raise ValueError(f"stream_port must differ from reg_port, not {stream_port!r}")
        if not isinstance(records_per_datagram, int) or not 1 <= records_per_datagram <= 180:
            raise ValueError(f"records_per_datagram must be an integer in [1, 180], "
                             f"not {records_per_datagram!r}")
        if not isinstance(fifo_depth, int) or fifo_depth < records_per_datagram or \
                fifo_depth & (fifo_depth - 1):
            raise ValueError(f"fifo_depth must be a power of 2 >= records_per_datagram, "
                             f"not {fifo_depth!r}")
        if not isinstance(flush_cycles, int) or flush_cycles < 1:
            raise ValueError(f"flush_cycles must be an integer >= 1, not {flush_cycles!r}")
        if not isinstance(reply_timeout, int) or reply_timeout < 2:
            raise ValueError(f"reply_timeout must be an integer >= 2, not {reply_timeout!r}")
        self.params = dict(mac=mac, ip=ip, reg_port=reg_port, stream_port=stream_port)
        self.records_per_datagram = records_per_datagram
        self.fifo_depth = fifo_depth
        self.flush_cycles = flush_cycles
        self.reply_timeout = reply_timeout
        super().__init__({
            "rx": In(stream.Signature(Octet)),
            "tx": Out(stream.Signature(Octet)),
            "reg_rx": Out(stream.Signature(8)),
            "reg_tx": In(stream.Signature(8)),
            "records": In(stream.Signature(64)),
            "upstream_dropped": In(32),
            "mac": In(48, init=mac), "ip": In(32, init=ip),
            "reg_port": In(16, init=reg_port), "stream_port": In(16, init=stream_port),
            "subscribed": Out(1),
            **{name: Out(32) for name in COUNTERS},
        })

    def registers(self):
        """The stack's registers (see the module docstring)."""
        p = self.params
        return [
            Reg("mac", 48, Access.RW, reset=p["mac"], doc="Our MAC address (first byte MSB)."),
            Reg("ip", 32, Access.RW, reset=p["ip"], doc="Our IPv4 address (first octet MSB)."),
            Reg("reg_port", 16, Access.RW, reset=p["reg_port"],
                doc="UDP port of the register bridge."),
            Reg("stream_port", 16, Access.RW, reset=p["stream_port"],
                doc="UDP port of the record stream."),
            Reg("subscribed", 1, Access.R, doc="1 while a record stream destination is set."),
        ] + [Reg(name, 32, Access.R, doc=_COUNTER_DOCS[name]) for name in COUNTERS]

    def elaborate(self, platform):
        m = Module()
        rx = self.rx
        byte = rx.payload.data
        cnt = {name: getattr(self, name) for name in COUNTERS}

        def bump(name):
            return cnt[name].eq(cnt[name] + 1)

        # ---------------------------------------------------------------- receive buffer
        m.submodules.rxbuf = rxbuf = Memory(shape=8, depth=BUFFER_BYTES, init=[])
        rxw = rxbuf.write_port()
        rxr = rxbuf.read_port(transparent_for=())
        m.submodules.rspbuf = rspbuf = Memory(shape=8, depth=BUFFER_BYTES, init=[])
        rspw = rspbuf.write_port()
        rspr = rspbuf.read_port(transparent_for=())

        # ---------------------------------------------------------------- receive parser
        idx = Signal(range(BUFFER_BYTES + 1))     # index of the current byte in the frame
        overlong = Signal()
        dst_ours = Signal()
        dst_bcast = Signal()
        p_src_mac = Signal(48)
        p_type = Signal(16)
        p_arp_hdr = Signal(64)
        p_sha = Signal(48)
        p_spa = Signal(32)
        p_tpa = Signal(32)
        p_vihl = Signal(8)
        p_total = Signal(16)
        p_frag = Signal(16)
        p_proto = Signal(8)
        p_src_ip = Signal(32)
        p_dst_ip = Signal(32)
        p_l4 = Signal(64)          # bytes 34..41: ICMP type/code/csum/.. or UDP header
        p_cmd = Signal(8)
        p_rseq = Signal(8)
        last_sport = Signal(16)
        last_rseq = Signal(8)
        last_valid = Signal()
        csum_acc = Signal(20)
        csum_hi = Signal(8)
        length = Signal(range(BUFFER_BYTES + 1))
        last_err = Signal(RxError)
        locked = Signal()          # reply engine busy (buffer in use)
        frame_locked = Signal()    # buffer was in use when this frame began

        def capture(sig, lo, n):
            with m.If((idx >= lo) & (idx < lo + n)):
                m.d.sync += sig.eq(Cat(byte, sig[:-8]))

        decide = Signal()
        decide2 = Signal()
        m.d.sync += [decide.eq(0), decide2.eq(decide)]
        start_reply = Signal()          # registered: the reply engine starts the cycle after
        start_kind = Signal(range(4))
        m.d.sync += start_reply.eq(0)
        m.d.comb += rx.ready.eq(~decide & ~decide2 & ~start_reply)
        fire = rx.valid & rx.ready
        mac_byte = Signal(8)
        _byte_mux(m, Mux(rx.payload.first, 0, idx), _be(self.mac, 6), mac_byte)
        with m.If(fire):
            with m.If(rx.payload.first):
                m.d.sync += [idx.eq(1), overlong.eq(0), dst_ours.eq(byte == mac_byte),
                             dst_bcast.eq(byte == 0xFF), csum_acc.eq(0),
                             frame_locked.eq(locked)]
            with m.Else():
                with m.If(idx == BUFFER_BYTES):
                    m.d.sync += overlong.eq(1)
                with m.Else():
                    m.d.sync += idx.eq(idx + 1)
                with m.If(idx < 6):
                    m.d.sync += [dst_ours.eq(dst_ours & (byte == mac_byte)),
                                 dst_bcast.eq(dst_bcast & (byte == 0xFF))]
            capture(p_src_mac, 6, 6)
            capture(p_type, 12, 2)
            capture(p_arp_hdr, 14, 8)
            capture(p_sha, 22, 6)
            capture(p_spa, 28, 4)
            capture(p_tpa, 38, 4)
            capture(p_vihl, 14, 1)
            capture(p_total, 16, 2)
            capture(p_frag, 20, 2)
            capture(p_proto, 23, 1)
            capture(p_src_ip, 26, 4)
            capture(p_dst_ip, 30, 4)
            capture(p_l4, 34, 8)
            capture(p_cmd, 42, 1)
            capture(p_rseq, 43, 1)
            with m.If((idx >= 14) & (idx < 34)):
                with m.If(~idx[0]):
                    m.d.sync += csum_hi.eq(byte)
                with m.Else():
                    m.d.sync += csum_acc.eq(csum_acc + Cat(byte, csum_hi))
            m.d.comb += [rxw.addr.eq(Mux(rx.payload.first, 0, idx)), rxw.data.eq(byte),
                         rxw.en.eq(~Mux(rx.payload.first, locked, frame_locked)
                                   & (rx.payload.first | (idx < BUFFER_BYTES)))]
            with m.If(rx.payload.last):
                m.d.sync += [decide.eq(1), last_err.eq(rx.payload.err),
                             length.eq(Mux(rx.payload.first, 1, idx + 1))]

        # Decision, one cycle after the last byte.
        f1 = csum_acc[:16] + csum_acc[16:]
        ip_csum_ok = (f1[:16] + f1[16:])[:16] == 0xFFFF
        udp_len = p_l4[16:32]
        udp_dport = p_l4[32:48]
        udp_sport = p_l4[48:64]
        icmp_type = p_l4[56:64]
        icmp_code = p_l4[48:56]

        # Reply engine registers.
        r_kind = Signal(range(4))       # 0 ARP, 1 ICMP, 2 REG
        r_mac = Signal(48)
        r_ip = Signal(32)
        r_port = Signal(16)
        r_total = Signal(16)            # ICMP: IP total length; REG: request payload bytes
        r_l4 = Signal(64)

        s_pending = Signal()            # a start/stop command waits for the stream engine
        s_cmd_start = Signal()
        s_new_mac = Signal(48)
        s_new_ip = Signal(32)
        s_new_port = Signal(16)

        def reply(kind):
            stmts = [r_kind.eq(kind), r_mac.eq(p_src_mac), r_ip.eq(p_src_ip), r_l4.eq(p_l4),
                     r_port.eq(udp_sport), r_total.eq(p_total)]
            with m.If(frame_locked):
                m.d.sync += bump("busy")
            with m.Else():
                m.d.sync += stmts
                m.d.sync += [start_reply.eq(1), start_kind.eq(kind)]

        # Decision, in two steps after the last byte: every test is registered (c_*), then the
        # tests are ranked (the frame's fields stay put: rx.ready is low meanwhile).
        # The stale test's inputs come from bytes 34..43, final well before the last byte of any
        # frame of 60 bytes or more (shorter ones are dropped as truncated): register them ahead.
        rseq_eff = Signal(8)
        same_port = Signal()
        m.d.sync += [rseq_eff.eq(Mux(udp_len > 9, p_rseq, 0)),
                     same_port.eq(last_valid & (last_sport == udp_sport))]
        behind = Signal(8)
        m.d.comb += behind.eq(last_rseq - rseq_eff)
        c_fcs = Signal(name="c_fcs")
        m.d.sync += c_fcs.eq(last_err == RxError.FCS)
        c_short = Signal(name="c_short")
        m.d.sync += c_short.eq((last_err == RxError.SHORT) | (length < 60) | overlong)
        c_not_for_us = Signal(name="c_not_for_us")
        m.d.sync += c_not_for_us.eq(~dst_ours & ~dst_bcast)
        c_arp = Signal(name="c_arp")
        m.d.sync += c_arp.eq(p_type == ETH_ARP)
        c_arp_bad = Signal(name="c_arp_bad")
        m.d.sync += c_arp_bad.eq(p_arp_hdr != 0x0001_0800_0604_0001)
        c_tpa_foreign = Signal(name="c_tpa_foreign")
        m.d.sync += c_tpa_foreign.eq(p_tpa != self.ip)
        c_not_ipv4 = Signal(name="c_not_ipv4")
        m.d.sync += c_not_ipv4.eq(p_type != ETH_IPV4)
        c_bcast = Signal(name="c_bcast")
        m.d.sync += c_bcast.eq(~dst_ours)
        c_vihl_bad = Signal(name="c_vihl_bad")
        m.d.sync += c_vihl_bad.eq(p_vihl != 0x45)
        c_csum_bad = Signal(name="c_csum_bad")
        m.d.sync += c_csum_bad.eq(~ip_csum_ok)
        c_ip_foreign = Signal(name="c_ip_foreign")
        m.d.sync += c_ip_foreign.eq(p_dst_ip != self.ip)
        c_frag = Signal(name="c_frag")
        m.d.sync += c_frag.eq(p_frag[:14] != 0)
        c_total_bad = Signal(name="c_total_bad")
        m.d.sync += c_total_bad.eq((p_total < 28) | (p_total > length - 14))
        c_icmp = Signal(name="c_icmp")
        m.d.sync += c_icmp.eq(p_proto == PROTO_ICMP)
        c_icmp_other = Signal(name="c_icmp_other")
        m.d.sync += c_icmp_other.eq((icmp_type != 8) | (icmp_code != 0))
        c_not_udp = Signal(name="c_not_udp")
        m.d.sync += c_not_udp.eq(p_proto != PROTO_UDP)
        c_udp_len_bad = Signal(name="c_udp_len_bad")
        m.d.sync += c_udp_len_bad.eq((udp_len < 8) | (udp_len > p_total - 20))
        c_stream = Signal(name="c_stream")
        m.d.sync += c_stream.eq(udp_dport == self.stream_port)
        c_udp_empty = Signal(name="c_udp_empty")
        m.d.sync += c_udp_empty.eq(udp_len == 8)
        c_cmd_ok = Signal(name="c_cmd_ok")
        m.d.sync += c_cmd_ok.eq((p_cmd == STREAM_START) | (p_cmd == STREAM_STOP))
        c_not_reg = Signal(name="c_not_reg")
        m.d.sync += c_not_reg.eq(udp_dport != self.reg_port)
        c_stale = Signal(name="c_stale")
        m.d.sync += c_stale.eq(same_port & (behind != 0) & ~behind[7])
        with m.If(decide2):
            with m.If(c_fcs):
                m.d.sync += bump("bad_fcs")
            with m.Elif(c_short):
                m.d.sync += bump("truncated")
            with m.Else():
                m.d.sync += bump("rx_frames")
                with m.If(c_not_for_us):
                    m.d.sync += bump("foreign_mac")
                with m.Elif(c_arp):
                    with m.If(c_arp_bad):
                        m.d.sync += bump("unsupported")
                    with m.Elif(c_tpa_foreign):
                        m.d.sync += bump("foreign_ip")
                    with m.Else():
                        reply(0)
                        m.d.sync += [r_mac.eq(p_sha), r_ip.eq(p_spa)]
                with m.Elif(c_not_ipv4):
                    m.d.sync += bump("unsupported")
                with m.Elif(c_bcast):
                    m.d.sync += bump("foreign_mac")
                with m.Elif(c_vihl_bad):
                    m.d.sync += bump("unsupported")
                with m.Elif(c_csum_bad):
                    m.d.sync += bump("bad_ip_checksum")
                with m.Elif(c_ip_foreign):
                    m.d.sync += bump("foreign_ip")
                with m.Elif(c_frag):
                    m.d.sync += bump("unsupported")
                with m.Elif(c_total_bad):
                    m.d.sync += bump("truncated")
                with m.Elif(c_icmp):
                    with m.If(c_icmp_other):
                        m.d.sync += bump("unsupported")
                    with m.Else():
                        reply(1)
                with m.Elif(c_not_udp):
                    m.d.sync += bump("unsupported")
                with m.Elif(c_udp_len_bad):
                    m.d.sync += bump("truncated")
                with m.Elif(c_stream):
                    with m.If(c_udp_empty):
                        m.d.sync += bump("truncated")
                    with m.Elif(c_cmd_ok):
                        m.d.sync += [s_pending.eq(1), s_cmd_start.eq(p_cmd == STREAM_START),
                                     s_new_mac.eq(p_src_mac), s_new_ip.eq(p_src_ip),
                                     s_new_port.eq(udp_sport)]
                    with m.Else():
                        m.d.sync += bump("unsupported")
                with m.Elif(c_not_reg):
                    m.d.sync += bump("wrong_port")
                with m.Else():
                    with m.If(frame_locked):
                        m.d.sync += bump("busy")
                    with m.Elif(c_stale):
                        m.d.sync += bump("stale")
                    with m.Else():
                        reply(2)
                        m.d.sync += [r_total.eq(udp_len - 8), last_valid.eq(1),
                                     last_sport.eq(udp_sport),
                                     last_rseq.eq(rseq_eff)]

        # ---------------------------------------------------------------- reply engine
        a_valid = Signal()
        a_ready = Signal()
        a_data = Signal(8)
        a_last = Signal()
        a_fire = a_valid & a_ready

        pos = Signal(range(BUFFER_BYTES + 64))
        rlen = Signal(range(BUFFER_BYTES + 1))     # response bytes collected
        rsp_need = Signal(range(BUFFER_BYTES + 1))
        idle_t = Signal(range(self.reply_timeout + 1))
        r_ip_total = Signal(16)
        r_csum_words = _ipv4_words(r_ip_total, Mux(r_kind == 1, Const(PROTO_ICMP, 8),
                                                   Const(PROTO_UDP, 8)), self.ip, r_ip)
        r_csum = _Checksum(m, "reply", r_csum_words)
        icmp_sum = r_l4[32:48] + 0x0800
        icmp_csum = (icmp_sum[:16] + icmp_sum[16:])[:16]

        def eth(etype):
            return _be(r_mac, 6) + _be(self.mac, 6) + _be(Const(etype, 16), 2)

        ip_hdr = _be(Const(0x4500, 16), 2) + _be(r_ip_total, 2) + [Const(0, 8)] * 2 + \
            _be(Const(0x4000, 16), 2) + [Const(64, 8), Mux(r_kind == 1, PROTO_ICMP, PROTO_UDP)] \
            + _be(r_csum.value, 2) + _be(self.ip, 4) + _be(r_ip, 4)
        arp_bytes = eth(ETH_ARP) + _be(Const(0x0001_0800_0604_0002, 64), 8) + \
            _be(self.mac, 6) + _be(self.ip, 4) + _be(r_mac, 6) + _be(r_ip, 4)
        icmp_bytes = eth(ETH_IPV4) + ip_hdr + [Const(0, 8), Const(0, 8)] + _be(icmp_csum, 2)
        udp_bytes = eth(ETH_IPV4) + ip_hdr + _be(self.reg_port, 2) + _be(r_port, 2) + \
            _be((rlen + 8)[:16], 2) + [Const(0, 8), Const(0, 8)]
        # The header byte is looked up one byte ahead (at ``npos`` = ``pos + 1``, from the
        # previous byte's cycle on) and registered in ``hdr_q``, so the byte multiplexer is not
        # between ``pos`` and the output stage; ``in_pl`` (``pos >= hdr_len``) and ``last_q``
        # (``pos == end``) are registered the same way.
        npos = Signal(range(BUFFER_BYTES + 64))
        hdr_next = Signal(8)
        hdr_q = Signal(8)
        in_pl = Signal()
        last_q = Signal()
        with m.Switch(r_kind):
            with m.Case(0):
                _byte_mux(m, npos, arp_bytes, hdr_next)
            with m.Case(1):
                _byte_mux(m, npos, icmp_bytes, hdr_next)
            with m.Default():
                _byte_mux(m, npos, udp_bytes, hdr_next)

        # Request bytes go from the buffer memory straight into a small FIFO (no logic between
        # the memory output and a register): a read is issued only when the FIFO has room for
        # it and for the read still in flight.
        m.submodules.feed_fifo = feed_fifo = fifo.SyncFIFOBuffered(width=8, depth=4)
        m.d.comb += [self.reg_rx.payload.eq(feed_fifo.r_data),
                     self.reg_rx.valid.eq(feed_fifo.r_rdy), feed_fifo.r_en.eq(self.reg_rx.ready)]
        feed_ptr = Signal(range(BUFFER_BYTES + 1))
        feed_left = Signal(16)
        in_flight = Signal()
        issue = Signal()
        m.d.sync += in_flight.eq(issue)
        m.d.comb += [feed_fifo.w_en.eq(in_flight), feed_fifo.w_data.eq(rxr.data)]
        got = self.reg_tx.valid & self.reg_tx.ready
        m.d.comb += [rspw.addr.eq(rlen), rspw.data.eq(self.reg_tx.payload),
                     rspw.en.eq(got & (rlen < BUFFER_BYTES))]
        with m.If(got):
            m.d.sync += rlen.eq(rlen + 1)
            with m.If(rlen == 3):
                m.d.sync += rsp_need.eq(6 + (self.reg_tx.payload << 2))
        rsp_done = (rlen >= 4) & (rlen == rsp_need)

        # Read addresses three bytes ahead of ``pos``, kept in registers (no adder before the
        # memory address inputs).
        ahead_rx = Signal(range(BUFFER_BYTES + 64))
        ahead_rsp = Signal(range(BUFFER_BYTES + 64))
        m.d.comb += [a_data.eq(hdr_q), rxr.addr.eq(ahead_rx), rspr.addr.eq(ahead_rsp)]
        mem_q = Signal(8)
        rx_q = Signal(8)
        rsp_q = Signal(8)
        send_end = Signal(16)
        m.d.sync += [rx_q.eq(rxr.data), rsp_q.eq(rspr.data),
                     mem_q.eq(Mux(r_kind == 1, rx_q, rsp_q))]

        with m.FSM(name="reply"):
            with m.State("IDLE"):
                with m.If(start_reply):
                    m.d.sync += [locked.eq(1), pos.eq(0), npos.eq(0), rlen.eq(0),
                                 rsp_need.eq(0), feed_ptr.eq(42), idle_t.eq(0)]
                    with m.If(start_kind == 2):
                        m.next = "PRIME"
                    with m.Else():
                        m.d.sync += r_ip_total.eq(p_total)
                        m.next = "PREP"
            with m.State("PRIME"):
                m.d.sync += feed_left.eq(r_total)
                m.next = "FEED"
            with m.State("FEED"):
                m.d.comb += [rxr.addr.eq(feed_ptr), self.reg_tx.ready.eq(1),
                             issue.eq((feed_left != 0) & (feed_fifo.w_level < 3))]
                with m.If(issue):
                    m.d.sync += [feed_ptr.eq(feed_ptr + 1), feed_left.eq(feed_left - 1)]
                with m.If((feed_left == 0) & ~in_flight):
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += self.reg_tx.ready.eq(~rsp_done)
                m.d.sync += idle_t.eq(Mux(got, 0, idle_t + 1))
                with m.If(rsp_done):
                    m.d.sync += r_ip_total.eq(rlen + 28)
                    m.next = "PREP"
                with m.Elif(idle_t == self.reply_timeout - 1):
                    m.d.sync += [bump("reg_no_reply"), locked.eq(0)]
                    m.next = "IDLE"
            with m.State("PREP"):
                m.d.sync += [pos.eq(pos + 1), send_end.eq(
                    Mux(r_kind == 0, 41, Mux(r_kind == 1, r_ip_total + 13, rlen + 41)))]
                with m.If(pos == _Checksum.latency):
                    # npos is 0 here: hdr_q takes byte 0; the frame is longer than 42 bytes.
                    m.d.sync += [pos.eq(0), npos.eq(1), hdr_q.eq(hdr_next), in_pl.eq(0),
                                 last_q.eq(0), ahead_rx.eq(3), ahead_rsp.eq(3 - 42)]
                    m.next = "SEND"
            with m.State("SEND"):
                hdr_len = Mux(r_kind == 0, 42, Mux(r_kind == 1, 38, 42))
                end = send_end
                # Payload bytes come from a memory through two more registers (rx_q / rsp_q,
                # then mem_q): the read is issued three bytes ahead. This relies on the consumer
                # taking one byte per cycle from the middle of the header on, which MacTx does
                # once a frame started.
                m.d.comb += [a_valid.eq(1), a_last.eq(last_q)]
                with m.If(in_pl):
                    m.d.comb += a_data.eq(mem_q)
                with m.If(a_fire):
                    m.d.sync += [pos.eq(pos + 1), npos.eq(npos + 1), hdr_q.eq(hdr_next),
                                 in_pl.eq(npos >= hdr_len), last_q.eq(npos == end),
                                 ahead_rx.eq(ahead_rx + 1), ahead_rsp.eq(ahead_rsp + 1)]
                    with m.If(a_last):
                        m.d.sync += locked.eq(0)
                        with m.Switch(r_kind):
                            for k, name in enumerate(("arp_replies", "icmp_replies",
                                                      "reg_replies")):
                                with m.Case(k):
                                    m.d.sync += bump(name)
                        m.next = "IDLE"

        # ---------------------------------------------------------------- stream engine
        m.submodules.rfifo = rfifo = fifo.SyncFIFOBuffered(width=64, depth=self.fifo_depth)
        subscribed = self.subscribed
        d_mac = Signal(48)
        d_ip = Signal(32)
        d_port = Signal(16)
        seq = Signal(32)
        first_index = Signal(32)
        fifo_dropped = cnt["fifo_dropped"]
        m.d.comb += [rfifo.w_data.eq(self.records.payload),
                     rfifo.w_en.eq(self.records.valid & subscribed),
                     self.records.ready.eq(subscribed)]
        with m.If(self.records.valid & subscribed & ~rfifo.w_rdy):
            m.d.sync += bump("fifo_dropped")

        b_valid = Signal()
        b_ready = Signal()
        b_data = Signal(8)
        b_last = Signal()
        b_fire = b_valid & b_ready
        n_rec = Signal(range(self.records_per_datagram + 1))
        s_total = Signal(16)
        spos = Signal(range(42 + STREAM_HEADER_BYTES + 1))
        rec_i = Signal(range(self.records_per_datagram + 1))
        rbyte = Signal(3)
        rec_sr = Signal(64)
        rec_q = Signal(64)            # the FIFO head, registered (loaded 8 cycles after a pop)
        m.d.sync += rec_q.eq(rfifo.r_data)
        recs_left = Signal(range(self.records_per_datagram + 1))
        pop = Signal()
        m.d.sync += pop.eq(0)
        m.d.comb += rfifo.r_en.eq(pop)
        wait_t = Signal(range(self.flush_cycles + 1))
        hdr_fields = Signal(StreamHeader)
        s_csum = _Checksum(m, "stream", _ipv4_words(s_total, Const(PROTO_UDP, 8), self.ip,
                                                      d_ip))
        s_ip_hdr = _be(Const(0x4500, 16), 2) + _be(s_total, 2) + [Const(0, 8)] * 2 + \
            _be(Const(0x4000, 16), 2) + [Const(64, 8), Const(PROTO_UDP, 8)] + \
            _be(s_csum.value, 2) + _be(self.ip, 4) + _be(d_ip, 4)
        hv = hdr_fields.as_value()
        s_bytes = _be(d_mac, 6) + _be(self.mac, 6) + _be(Const(ETH_IPV4, 16), 2) + s_ip_hdr + \
            _be(self.stream_port, 2) + _be(d_port, 2) + _be(s_total - 20, 2) + \
            [Const(0, 8)] * 2 + [hv.word_select(i, 8) for i in range(STREAM_HEADER_BYTES)]
        # As in the reply engine: the header byte is looked up one byte ahead (``snpos``) and
        # registered (``s_hdr_q``), so the byte multiplexer is not before the output stage.
        snpos = Signal(range(42 + STREAM_HEADER_BYTES + 1))
        s_hdr_next = Signal(8)
        s_hdr_q = Signal(8)
        _byte_mux(m, snpos, s_bytes, s_hdr_next)
        # The decision to send uses the FIFO level of the previous cycle (never more than the
        # records present: only this engine pops, and not while it decides).
        n_full = self.records_per_datagram
        level = Signal.like(rfifo.r_level)
        have_full = Signal()
        have_any = Signal()
        wait_done = Signal()
        m.d.sync += [level.eq(rfifo.r_level), have_full.eq(rfifo.r_level >= n_full),
                     have_any.eq(rfifo.r_level != 0),
                     wait_done.eq(wait_t >= self.flush_cycles - 1)]
        with m.If(subscribed & have_any & ~wait_done):
            m.d.sync += wait_t.eq(wait_t + 1)

        with m.FSM(name="stream"):
            with m.State("IDLE"):
                with m.If(s_pending):
                    m.d.sync += [s_pending.eq(0), subscribed.eq(s_cmd_start),
                                 d_mac.eq(s_new_mac), d_ip.eq(s_new_ip), d_port.eq(s_new_port)]
                    with m.If(s_cmd_start):
                        m.d.sync += [seq.eq(0), first_index.eq(0), fifo_dropped.eq(0),
                                     cnt["stream_datagrams"].eq(0)]
                with m.Elif(subscribed & (have_full | (have_any & wait_done))):
                    count = Mux(have_full, n_full, level)
                    m.d.sync += [n_rec.eq(count), s_total.eq(28 + STREAM_HEADER_BYTES
                                                               + (count << 3)),
                                 spos.eq(0), snpos.eq(0), rec_i.eq(0), rbyte.eq(0),
                                 wait_t.eq(0)]
                    m.next = "PREP"
            with m.State("PREP"):
                m.d.sync += [hdr_fields.seq.eq(seq), hdr_fields.first_index.eq(first_index),
                             hdr_fields.fifo_dropped.eq(fifo_dropped),
                             hdr_fields.upstream_dropped.eq(self.upstream_dropped),
                             hdr_fields.count.eq(n_rec), hdr_fields.flags.eq(1)]
                m.d.sync += spos.eq(spos + 1)
                with m.If(spos == _Checksum.latency):
                    # snpos is 0 here: s_hdr_q takes byte 0 (the destination MAC's first).
                    m.d.sync += [spos.eq(0), snpos.eq(1), s_hdr_q.eq(s_hdr_next)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [b_valid.eq(1), b_data.eq(s_hdr_q)]
                with m.If(b_fire):
                    m.d.sync += [spos.eq(spos + 1), snpos.eq(snpos + 1), s_hdr_q.eq(s_hdr_next)]
                    with m.If(spos == 42 + STREAM_HEADER_BYTES - 1):
                        # The first record goes into a shift register (no memory-to-output path).
                        m.d.sync += [rec_sr.eq(rec_q), pop.eq(1), recs_left.eq(n_rec)]
                        m.next = "RECORDS"
            with m.State("RECORDS"):
                m.d.comb += [b_valid.eq(1), b_data.eq(rec_sr[:8]),
                             b_last.eq((recs_left == 1) & (rbyte == 7))]
                with m.If(b_fire):
                    m.d.sync += [rbyte.eq(rbyte + 1), rec_sr.eq(rec_sr >> 8)]
                    with m.If(rbyte == 7):
                        m.d.sync += [rec_i.eq(rec_i + 1), recs_left.eq(recs_left - 1)]
                        with m.If(~b_last):
                            # The FIFO is popped a cycle later (its output holds meanwhile).
                            m.d.sync += [rec_sr.eq(rec_q), pop.eq(1)]
                    with m.If(b_last):
                        m.d.sync += [seq.eq(seq + 1), first_index.eq(first_index + n_rec),
                                     bump("stream_datagrams")]
                        m.next = "IDLE"

        # ---------------------------------------------------------------- transmit arbiter
        # Each engine's bytes pass a registered stage, then a frame-level arbiter picks one.
        m.submodules.skid_a = skid_a = SkidBuffer(Octet)
        m.submodules.skid_b = skid_b = SkidBuffer(Octet)
        m.d.comb += [skid_a.i.valid.eq(a_valid), skid_a.i.payload.data.eq(a_data),
                     skid_a.i.payload.last.eq(a_last), a_ready.eq(skid_a.i.ready),
                     skid_b.i.valid.eq(b_valid), skid_b.i.payload.data.eq(b_data),
                     skid_b.i.payload.last.eq(b_last), b_ready.eq(skid_b.i.ready)]
        ao, bo, tx = skid_a.o, skid_b.o, self.tx
        grant_b = Signal()
        busy_tx = Signal()
        sel_b = Mux(busy_tx, grant_b, ~ao.valid & bo.valid)
        m.d.comb += [
            tx.valid.eq(Mux(sel_b, bo.valid, ao.valid)),
            tx.payload.data.eq(Mux(sel_b, bo.payload.data, ao.payload.data)),
            tx.payload.last.eq(Mux(sel_b, bo.payload.last, ao.payload.last)),
            tx.payload.first.eq(~busy_tx),
            ao.ready.eq(tx.ready & ~sel_b),
            bo.ready.eq(tx.ready & sel_b),
        ]
        with m.If(tx.valid & tx.ready):
            m.d.sync += [busy_tx.eq(~tx.payload.last), grant_b.eq(sel_b)]
        return m
