"""A node's Ethernet stack in the Amaranth simulator, served on real UDP sockets.

:class:`SimNetNode` runs :class:`~combkey.gateware.net.stack.NetStack` with a node top
(``TransmitterNode`` or ``RelayNode``) on its register port and a
:class:`~combkey.gateware.net.core.CounterRecordSource` on its record port, in pysim, at the
level of the MAC byte streams (:class:`~combkey.gateware.net.mac.Octet`). Each datagram that
arrives on its register or stream socket (127.0.0.1) is wrapped in the Ethernet/IPv4/UDP frame
the node would receive (the sender's UDP port kept), and each frame the gateware sends is
unwrapped and sent from the matching socket to its destination port. So ``udp://`` links and
``combkey stream`` run unchanged against the simulated gateware.

``combkey netsim [--node KIND]`` serves one until interrupted and prints its ports.
"""
import collections
import selectors
import socket
import threading

import click
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .gateware.net.core import CounterRecordSource
from .gateware.net.mac import Octet
from .gateware.net.stack import DEFAULT_IP, DEFAULT_MAC, REG_PORT, STREAM_PORT, NetStack, udp_frame
from .gateware.node import node_class
from .gateware.stream import make_simulator

__all__ = ["SimNetNode", "netsim"]

HOST_MAC = 0x02_00_00_00_00_AA
HOST_IP = 0x7F_00_00_01
_GAP = object()


class _Top(wiring.Component):
    def __init__(self, kind, record_period):
        self.stack = NetStack(flush_cycles=4000)
        self.node = node_class(kind)()
        self.record_period = record_period
        super().__init__({"rx": In(stream.Signature(Octet)),
                          "tx": Out(stream.Signature(Octet))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.stack = stack = self.stack
        m.submodules.node = node = self.node
        m.submodules.src = src = CounterRecordSource()
        wiring.connect(m, wiring.flipped(self.rx), stack.rx)
        wiring.connect(m, stack.tx, wiring.flipped(self.tx))
        wiring.connect(m, stack.reg_rx, node.rx)
        wiring.connect(m, node.tx, stack.reg_tx)
        wiring.connect(m, src.o, stack.records)
        m.d.comb += [src.enable.eq(stack.subscribed), src.period.eq(self.record_period),
                     stack.upstream_dropped.eq(src.dropped)]
        return m


class SimNetNode:
    """See the module docstring.

    Parameters
    ----------
    kind : str
        ``transmitter`` or ``relay``.
    record_period : int
        Cycles between test-pattern records while a stream subscriber exists.
    host : str
        Address the sockets bind to.
    """

    def __init__(self, kind="transmitter", *, record_period=16, host="127.0.0.1"):
        self.top = _Top(kind, record_period)
        self.sim = make_simulator(self.top)
        self.sim.add_testbench(self._pump, background=True)
        self.reg_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.reg_sock.bind((host, 0))
        self.stream_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.stream_sock.bind((host, 0))
        self.reg_port = self.reg_sock.getsockname()[1]
        self.stream_port = self.stream_sock.getsockname()[1]
        self._in = collections.deque()       # bytes of frames to feed, with framing flags
        self._out = []
        self.cycles = 0
        self.subscribed = False
        self._active_until = 0
        self._stop = threading.Event()

    async def _pump(self, ctx):
        rx, tx = self.top.rx, self.top.tx
        ctx.set(tx.ready, 1)
        cur = bytearray()
        while True:
            item = self._in[0] if self._in else None      # a byte, _GAP, or nothing queued
            byte = isinstance(item, dict)
            if byte:
                ctx.set(rx.payload, item)
            ctx.set(rx.valid, byte)
            _, _, rr, tv, tp, sub = await ctx.tick().sample(rx.ready, tx.valid, tx.payload,
                                                            self.top.stack.subscribed)
            self.cycles += 1
            self.subscribed = bool(sub)
            if item is _GAP or (byte and rr):
                self._in.popleft()
                self._active_until = self.cycles + 2000     # the reply takes a while
            if tv:
                self._active_until = self.cycles + 2000
            if tv:
                cur.append(tp.data)
                if tp.last:
                    self._out.append(bytes(cur))
                    cur = bytearray()

    def _feed(self, payload, sport, dport):
        frame = udp_frame(DEFAULT_MAC, HOST_MAC, HOST_IP, DEFAULT_IP, sport, dport, payload)
        frame += bytes(max(0, 60 - len(frame)))
        for i, b in enumerate(frame):
            self._in.append({"data": b, "first": i == 0, "last": i == len(frame) - 1, "err": 0})
        for _ in range(20):                  # preamble and inter-frame gap
            self._in.append(_GAP)

    def _deliver(self):
        for frame in self._out:
            sport = int.from_bytes(frame[34:36], "big")
            dport = int.from_bytes(frame[36:38], "big")
            length = int.from_bytes(frame[38:40], "big")
            sock = self.reg_sock if sport == REG_PORT else self.stream_sock
            sock.sendto(frame[42:34 + length], ("127.0.0.1", dport))
        self._out.clear()

    def step(self, cycles):
        """Advance the simulation by ``cycles`` and send what the gateware sent."""
        target = self.cycles + cycles
        while self.cycles < target:
            self.sim.advance()
        self._deliver()

    def serve(self):
        """Serve until :meth:`stop` is called (run it in a thread or the main loop)."""
        sel = selectors.DefaultSelector()
        sel.register(self.reg_sock, selectors.EVENT_READ, REG_PORT)
        sel.register(self.stream_sock, selectors.EVENT_READ, STREAM_PORT)
        try:
            while not self._stop.is_set():
                busy = bool(self._in) or self.subscribed or self.cycles < self._active_until
                for key, _ in sel.select(timeout=0 if busy else 0.01):
                    data, addr = key.fileobj.recvfrom(2048)
                    self._feed(data, addr[1], key.data)
                if busy:
                    self.step(256)
        finally:
            sel.close()

    def stop(self):
        self._stop.set()

    def close(self):
        self.reg_sock.close()
        self.stream_sock.close()


@click.command()
@click.option("--node", "kind", type=click.Choice(["transmitter", "relay"]),
              default="transmitter", show_default=True, help="Node kind to simulate.")
@click.option("--record-period", type=int, default=16, show_default=True,
              help="Clock cycles between test-pattern records while streaming.")
def netsim(kind, record_period):
    """Serve a simulated node's Ethernet stack on 127.0.0.1 (register and stream ports)."""
    node = SimNetNode(kind, record_period=record_period)
    click.echo(f"register port: udp://127.0.0.1:{node.reg_port}  "
               f"stream port: udp://127.0.0.1:{node.stream_port}  (Ctrl-C stops)")
    try:
        node.serve()
    finally:
        node.close()
