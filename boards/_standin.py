"""Stand-in node and link used only while ``combkey.gateware.node`` / ``.uart`` are absent.

:class:`StandInNode` has the node-top interface (``rx``/``tx`` byte streams) and echoes every
byte it receives; :class:`StandInLink` wires its ``rx_pin`` straight back to ``tx_pin`` and
keeps the node as a submodule. Together with the board's heartbeat LED they exercise the PLL,
the pins and the build flow without the real gateware. Build reports say ``"node_impl":
"standin"`` when these were used.
"""
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StandInNode", "StandInLink"]


class StandInNode(wiring.Component):
    """Byte echo with the node-top interface.

    Members
    -------
    rx : In(stream.Signature(8))
        Bytes from the host.
    tx : Out(stream.Signature(8))
        The same bytes, one register of buffering.
    """

    rx: In(stream.Signature(8))
    tx: Out(stream.Signature(8))

    def __init__(self, *, clk_hz):
        self.clk_hz = clk_hz
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        with m.If(self.tx.ready | ~self.tx.valid):
            m.d.sync += [self.tx.valid.eq(self.rx.valid), self.tx.payload.eq(self.rx.payload)]
        m.d.comb += self.rx.ready.eq(self.tx.ready | ~self.tx.valid)
        return m


class StandInLink(wiring.Component):
    """Pin-level loopback holding a node.

    Members
    -------
    rx_pin : In(1)
    tx_pin : Out(1)
        Equal to ``rx_pin`` registered once in ``sync``.
    """

    rx_pin: In(1)
    tx_pin: Out(1, init=1)

    def __init__(self, node, *, clk_hz, baud):
        self.node = node
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.node = self.node
        m.d.sync += self.tx_pin.eq(self.rx_pin)
        m.d.comb += self.node.tx.ready.eq(1)
        loop = Signal(8)
        m.d.comb += [self.node.rx.valid.eq(0), self.node.rx.payload.eq(loop)]
        return m
