"""Stand-in node tops: for the build flow before the real nodes exist, and for pin plans.

:class:`StandInNode` has the node-top interface (``rx``/``tx`` byte streams) and echoes every
byte it receives; :class:`StandInLink` wires its ``rx_pin`` straight back to ``tx_pin`` and
keeps the node as a submodule. Together with the board's heartbeat LED they exercise the PLL,
the pins and the build flow without the real gateware. Build reports say ``"node_impl":
"standin"`` when these were used.

:class:`PinPlanProbe` is a node top with one port per entry of a pin plan: placing it checks a
board's whole plan (ball sites, ODDRX2F gearing, clocks) through nextpnr before real blocks use it.
"""
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StandInNode", "StandInLink", "PinPlanProbe"]


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


def _signature_from_plan(entries):
    """Build a node signature with one member per pin-plan port (nested on ``__``)."""
    tree = {}
    for e in entries:
        *outer, leaf = e.port.split("__")
        d = tree
        for part in outer:
            d = d.setdefault(part, {})
        d[leaf] = (Out if e.dir == "o" else In)(e.width)

    def build(d):
        return {k: Out(wiring.Signature(build(v))) if isinstance(v, dict) else v
                for k, v in d.items()}
    return {"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)), **build(tree)}


class PinPlanProbe(wiring.Component):
    """Node top with one port per pin-plan entry, to place-and-route a board's whole plan.

    Outputs carry a free-running counter; the inputs are xor-ed into ``tx`` so that none is
    optimised away. ``required_domains`` is passed through for :class:`NodeOnBoard`.
    """

    def __init__(self, entries, *, clk_hz, required_domains=()):
        self.clk_hz = clk_hz
        self.entries = entries
        self.required_domains = required_domains
        super().__init__(_signature_from_plan(entries))

    def elaborate(self, platform):
        m = Module()
        count = Signal(64)
        m.d.sync += count.eq(count + 1)
        ins = []
        for path, member, value in self.signature.flatten(self):
            if path[0] in ("rx", "tx"):
                continue
            if member.flow is Out:
                m.d.comb += value.eq(count[:len(value)])
            else:
                ins.append(value)
        m.d.comb += [self.tx.payload.eq(Cat(*ins).xor()), self.tx.valid.eq(1),
                     self.rx.ready.eq(1)]
        return m
