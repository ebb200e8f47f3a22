"""Ethernet links: ``udp://ADDR[:PORT]`` for :class:`~combkey.device.Device`, and the record
stream receiver behind ``combkey stream``.

Register link
-------------
``udp://10.0.0.2`` (port :data:`~combkey.gateware.net.stack.REG_PORT` by default,
``udp://10.0.0.2:7001`` to choose) opens a :class:`UdpLink`: one bridge request frame per
datagram, one response frame per datagram back (:mod:`combkey.gateware.net.stack`). The link
discards responses whose sequence number is not the request's (late or duplicated datagrams)
and counts them in ``stats["stale"]``; a request with no matching response within the timeout
returns ``None`` and :class:`~combkey.device.Device` resends it with the same sequence number.
Each link uses its own UDP source port, which the node uses to recognise late copies of old
requests (see ``stale`` in the stack) so that a reordered old write is never applied.

Stream of records
-----------------
:class:`StreamReceiver` subscribes to the node's stream port (``STREAM_START`` from its own
socket), receives record datagrams (:class:`~combkey.gateware.net.stack.StreamHeader` + 64-bit
records) and appends the raw records (8 bytes each, little endian, in arrival order) to a file.
It counts datagrams, records, sequence gaps (missing datagram numbers), records lost in those
gaps (from ``first_index``), late datagrams (written when they arrive, and no longer counted
as lost), duplicated datagrams (discarded), and the node's FIFO and upstream
drop counts, and reports them live and at the end.

``combkey stream --device udp://ADDR --out FILE [--duration S] [--records N]``.
"""
import os
import socket
import struct
import time
import urllib.parse

import click
from amaranth.lib import data

from .device import DeviceError, Link, register_scheme
from .gateware.bridge import SOF_RESPONSE, response_length
from .gateware.net.stack import (
    REG_PORT,
    STREAM_HEADER_BYTES,
    STREAM_PORT,
    STREAM_START,
    STREAM_STOP,
    StreamHeader,
)

__all__ = ["UdpLink", "StreamReceiver", "StreamStats", "HEADER_STRUCT", "stream",
           "parse_udp_url"]


def _header_struct():
    """``struct`` format of :class:`StreamHeader`, derived from its layout (little endian)."""
    codes = {16: "H", 32: "I", 64: "Q"}
    fmt = "<"
    offset = 0
    for _name, field in data.Layout.cast(StreamHeader):
        if field.offset != offset or field.width not in codes:
            raise TypeError("StreamHeader fields must be byte-aligned 16/32/64-bit words")
        fmt += codes[field.width]
        offset += field.width
    st = struct.Struct(fmt)
    assert st.size == STREAM_HEADER_BYTES
    return st


#: Decoder of the record datagram header (seq, first_index, fifo_dropped, upstream_dropped,
#: count, flags).
HEADER_STRUCT = _header_struct()


def parse_udp_url(url_or_parsed, default_port=REG_PORT):
    """Return ``(host, port)`` of ``udp://ADDR[:PORT]``; raise DeviceError naming the part."""
    parsed = url_or_parsed if isinstance(url_or_parsed, urllib.parse.ParseResult) else \
        urllib.parse.urlparse(url_or_parsed)
    if parsed.scheme != "udp":
        raise DeviceError(f"device URL must be udp://ADDR[:PORT], not {parsed.geturl()!r}")
    host = parsed.hostname
    if not host:
        raise DeviceError(f"udp URL must name a host, as in udp://10.0.0.2, "
                          f"not {parsed.geturl()!r}")
    try:
        port = parsed.port or default_port
    except ValueError:
        raise DeviceError(f"udp URL port must be an integer in [1, 65535], "
                          f"not {parsed.netloc!r}") from None
    return host, port


class UdpLink(Link):
    """Register link over UDP (see the module docstring)."""

    def __init__(self, host, port=REG_PORT):
        self.url = f"udp://{host}:{port}"
        self.addr = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.connect(self.addr)
        except OSError as exc:
            self.sock.close()
            raise DeviceError(f"cannot reach {self.url}: {exc}") from exc
        self.stats = {"sent": 0, "received": 0, "stale": 0, "malformed": 0, "timeouts": 0}

    def _drain(self):
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(2048)
                self.stats["stale"] += 1
        except (BlockingIOError, ConnectionRefusedError):
            pass
        finally:
            self.sock.setblocking(True)

    def exchange(self, request, timeout):
        self._drain()
        self.sock.send(bytes(request))
        self.stats["sent"] += 1
        seq = request[1]
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stats["timeouts"] += 1
                return None
            self.sock.settimeout(left)
            try:
                frame = self.sock.recv(2048)
            except TimeoutError:
                continue
            except ConnectionRefusedError:       # ICMP port unreachable: nobody listens
                time.sleep(min(left, 0.01))
                continue
            self.stats["received"] += 1
            if len(frame) < 4 or frame[0] != SOF_RESPONSE or \
                    len(frame) != response_length(frame):
                self.stats["malformed"] += 1
                continue
            if frame[1] != seq:
                self.stats["stale"] += 1
                continue
            return frame

    def close(self):
        self.sock.close()


def _open_udp(parsed, query):
    host, port = parse_udp_url(parsed)
    return UdpLink(host, port)


register_scheme("udp", _open_udp)


class StreamStats(dict):
    """Counters of a record stream reception (a dict with attribute access)."""

    __getattr__ = dict.__getitem__


class StreamReceiver:
    """Receive a node's record stream into a file (see the module docstring).

    Parameters
    ----------
    host : str
        The node's address.
    port : int
        The node's stream port.
    out : str or file or None
        Path (or binary file) the records are appended to; ``None`` counts only.
    bind : (str, int)
        Local address to receive on (default any address, an ephemeral port).
    """

    def __init__(self, host, port=STREAM_PORT, out=None, bind=("0.0.0.0", 0)):
        self.node = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(bind)
        self._own_file = isinstance(out, (str, os.PathLike))
        self.out = open(out, "wb", buffering=1 << 20) if self._own_file else out
        self.stats = StreamStats(datagrams=0, records=0, bytes=0, seq_gaps=0,
                                 missing_datagrams=0, lost_records=0, reordered=0,
                                 duplicates=0,
                                 malformed=0, fifo_dropped=0, upstream_dropped=0, seconds=0.0)
        self._next_seq = None
        self._next_index = None
        self._drop0 = None
        self._missing = set()

    #: Datagram numbers remembered as missing, so that a late arrival still counts.
    MAX_TRACKED_GAP = 4096

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def start(self):
        """Subscribe: the node streams to this socket from now on, its datagram sequence and
        counters restarting from 0 (so a loss of the very first datagrams is counted too)."""
        self._next_seq = self._next_index = 0
        self.sock.sendto(bytes([STREAM_START]), self.node)

    def stop(self):
        self.sock.sendto(bytes([STREAM_STOP]), self.node)

    def handle(self, payload):
        """Account for one datagram payload (bytes-like) and write its records."""
        st = self.stats
        n = len(payload)
        if n < STREAM_HEADER_BYTES:
            st["malformed"] += 1
            return
        seq, first, fdrop, udrop, count, _flags = HEADER_STRUCT.unpack_from(payload)
        if n != STREAM_HEADER_BYTES + 8 * count:
            st["malformed"] += 1
            return
        if self._next_seq is not None:
            ahead = (seq - self._next_seq) & 0xFFFF_FFFF
            if ahead >= 1 << 31:             # behind what we already passed: late or duplicate
                if seq in self._missing:     # late: it fills a gap after all
                    self._missing.discard(seq)
                    st["reordered"] += 1
                    st["missing_datagrams"] -= 1
                    st["lost_records"] -= count
                    self._write(payload, count)
                else:
                    st["duplicates"] += 1
                return
            if ahead:
                st["seq_gaps"] += 1
                st["missing_datagrams"] += ahead
                st["lost_records"] += (first - self._next_index) & 0xFFFF_FFFF
                if ahead <= self.MAX_TRACKED_GAP:
                    self._missing.update((self._next_seq + k) & 0xFFFF_FFFF
                                         for k in range(ahead))
                if len(self._missing) > self.MAX_TRACKED_GAP:
                    self._missing = set(sorted(self._missing, key=lambda q: (q - seq)
                                               & 0xFFFF_FFFF)[:self.MAX_TRACKED_GAP])
        self._next_seq = (seq + 1) & 0xFFFF_FFFF
        self._next_index = (first + count) & 0xFFFF_FFFF
        if self._drop0 is None:
            self._drop0 = (fdrop, udrop)
        st["fifo_dropped"] = fdrop
        st["upstream_dropped"] = (udrop - self._drop0[1]) & 0xFFFF_FFFF
        self._write(payload, count)

    def _write(self, payload, count):
        st = self.stats
        st["datagrams"] += 1
        st["records"] += count
        st["bytes"] += 8 * count
        if self.out is not None and count:
            self.out.write(payload[STREAM_HEADER_BYTES:])

    def run(self, duration=None, max_records=None, idle_timeout=2.0, progress=None,
            subscribe=True):
        """Receive until ``duration`` s, ``max_records`` records, or ``idle_timeout`` s of
        silence after the first datagram; return :attr:`stats`. ``progress(stats)`` is called
        about 10 times a second."""
        buf = bytearray(2048)
        view = memoryview(buf)
        if subscribe:
            self.start()
        t0 = time.monotonic()
        last_report = t0
        last_rx = None
        self.sock.settimeout(0.1)
        try:
            while True:
                now = time.monotonic()
                if duration is not None and now - t0 >= duration:
                    break
                if max_records is not None and self.stats["records"] >= max_records:
                    break
                if last_rx is not None and now - last_rx > idle_timeout:
                    break
                if last_rx is None and now - t0 > max(idle_timeout, 5.0) and duration is None:
                    break
                try:
                    n = self.sock.recv_into(buf)
                except TimeoutError:
                    continue
                last_rx = time.monotonic()
                self.handle(view[:n])
                if progress is not None and last_rx - last_report > 0.1:
                    self.stats["seconds"] = last_rx - t0
                    progress(self.stats)
                    last_report = last_rx
        finally:
            self.stats["seconds"] = time.monotonic() - t0
            if subscribe:
                self.stop()
            if self.out is not None:
                self.out.flush()
        return self.stats

    def close(self):
        if self._own_file:
            self.out.close()
        self.sock.close()


def _summary(st):
    secs = max(st["seconds"], 1e-9)
    return (f"{st['records']} records in {st['datagrams']} datagrams, "
            f"{8 * st['bytes'] / secs / 1e6:.1f} Mbit/s; sequence gaps {st['seq_gaps']} "
            f"({st['missing_datagrams']} datagrams, {st['lost_records']} records lost), "
            f"late {st['reordered']}, duplicate {st['duplicates']}, "
            f"malformed {st['malformed']}; node FIFO drops {st['fifo_dropped']}, "
            f"upstream drops {st['upstream_dropped']}")


@click.command()
@click.option("--device", required=True, help="The node, as udp://ADDR[:STREAM_PORT] "
              f"(stream port {STREAM_PORT} by default).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, writable=True),
              help="File the raw records are written to (8 bytes each, little endian).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--records", "max_records", type=int, default=None,
              help="Stop after this many records.")
@click.option("--idle", "idle_timeout", type=float, default=2.0, show_default=True,
              help="Stop after this many seconds without a datagram.")
def stream(device, out, duration, max_records, idle_timeout):
    """Receive a node's record stream over UDP into FILE, with loss accounting."""
    from rich.live import Live
    from rich.text import Text

    try:
        host, port = parse_udp_url(device, default_port=STREAM_PORT)
    except DeviceError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    rx = StreamReceiver(host, port, out=out)
    with Live(Text("waiting for records ..."), refresh_per_second=8, transient=True) as live:
        def progress(st):
            live.update(Text(_summary(st)))
        try:
            st = rx.run(duration=duration, max_records=max_records, idle_timeout=idle_timeout,
                        progress=progress)
        finally:
            rx.close()
    click.echo(_summary(st))
    lost = st["missing_datagrams"] + st["fifo_dropped"] + st["upstream_dropped"]
    if lost:
        click.echo(f"LOSS: {lost} events (see counts above)", err=True)
