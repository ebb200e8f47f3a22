"""A node top with one port per pin-plan entry, to place and route a board's whole plan.

:class:`PinPlanProbe` has the node-top interface (``rx``/``tx`` byte streams) plus one member per
:class:`~combkey.boards.base.PinPlanEntry` of a plan, nested on ``__`` as node tops nest their
interfaces. Placing it on a board (``NodeOnBoard``) checks the plan through nextpnr (ball sites,
banks, ODDRX2F/ODDRX1F gearing, the fast clock tree) before real blocks use the pins.
"""
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .base import FAST_BUFFERS

__all__ = ["PinPlanProbe"]


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

    Outputs carry a free-running counter (DDR lanes one clocked by ``fast``, so that nextpnr
    times that domain); the inputs are xor-ed into ``tx`` so that none is optimised away.
    ``required_domains`` is passed through for :class:`NodeOnBoard`.
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
        fast_ports = {e.port for e in self.entries if e.buffer in FAST_BUFFERS}
        if fast_ports:
            fast_count = Signal(64)
            m.d.fast += fast_count.eq(fast_count + 1)
        ins = []
        for path, member, value in self.signature.flatten(self):
            if path[0] in ("rx", "tx"):
                continue
            if "__".join(path) in fast_ports:
                m.d.comb += value.eq(fast_count[:len(value)])
            elif member.flow is Out:
                m.d.comb += value.eq(count[:len(value)])
            else:
                ins.append(value)
        m.d.comb += [self.tx.payload.eq(Cat(*ins).xor()), self.tx.valid.eq(1),
                     self.rx.ready.eq(1)]
        return m
