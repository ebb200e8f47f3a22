"""Clock-domain crossing of multi-bit register values: a free-running toggle handshake.

:class:`BusSync` carries a ``width``-bit value from ``i_domain`` to ``o_domain`` whose clocks
are unrelated (different frequencies, no phase relation). It is used for the Ethernet core's
registers when the stack runs in its own ``eth`` clock domain (:mod:`.core`): configuration
(MAC, IP, ports) from ``sync`` into ``eth``, counters from ``eth`` back into ``sync``.

Members
-------
i : In(width)
    Value in ``i_domain``.
o : Out(width, init=init)
    A snapshot of ``i`` in ``o_domain``: every bit of it was sampled at the same ``i_domain``
    clock edge (never a mix of an old and a new value), and snapshots arrive in order.

Protocol (``stages`` flip-flops per synchroniser, :class:`amaranth.lib.cdc.FFSynchronizer`)
--------------------------------------------------------------------------------------------
* ``o_domain`` owns the request toggle ``req``; ``i_domain`` owns the acknowledge toggle ``ack``
  and the holding register ``hold``; each toggle reaches the other side through a synchroniser
  (``req_i``, ``ack_o``).
* ``i_domain``, at each edge where ``req_i != ack``: ``hold <= i``, ``ack <= req_i``.
* ``o_domain``, at each edge where ``ack_o == req``: ``o <= hold``, ``req <= ~req``.

``hold`` only changes after a new request, which ``o_domain`` makes in the same edge at which it
copies ``hold``; the request needs ``stages`` ``i_domain`` edges to arrive, so ``hold`` is stable
whenever ``o_domain`` reads it, and every bit of ``o`` is a value ``hold`` had for at least
``stages`` ``o_domain`` cycles. No bit of ``i`` or ``hold`` is sampled while it may change:
the only asynchronous samples are the two 1-bit toggles, each behind a synchroniser.

Latency and rate: one round trip takes ``stages + 1`` edges of each clock (at most
``(stages + 1) * (T_i + T_o)``); ``o`` is renewed once per round trip and shows ``i`` as it was
at most two round trips earlier. With ``stages=2``, ``sync`` at 50 MHz and ``eth`` at 125 MHz:
a new value every <= 84 ns, at most 168 ns old. A value that lives shorter than a round trip
may be missed (counters are sampled, not summed).

Model: :func:`bus_sync_model` computes ``o`` at every ``o_domain`` edge from the clock periods
and phases, edge by edge.
"""
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["BusSync", "bus_sync_model", "clock_edges"]


class BusSync(wiring.Component):
    """A ``width``-bit value from ``i_domain`` to ``o_domain`` (see the module docstring).

    Parameters
    ----------
    width : int
        Bits, >= 1.
    i_domain, o_domain : str
        Source and destination clock domains (different).
    init : int
        Value of ``o`` and ``hold`` after reset (the source's reset value, so that a config
        register reads the same on both sides before the first transfer).
    stages : int
        Flip-flops per toggle synchroniser, >= 2.
    """

    def __init__(self, width, *, i_domain, o_domain, init=0, stages=2):
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        if i_domain == o_domain:
            raise ValueError(f"o_domain must differ from i_domain, not {o_domain!r}")
        if isinstance(stages, bool) or not isinstance(stages, int) or stages < 2:
            raise ValueError(f"stages must be an integer >= 2, not {stages!r}")
        self.width = width
        self.i_domain = i_domain
        self.o_domain = o_domain
        self.init = init
        self.stages = stages
        super().__init__({"i": In(width), "o": Out(width, init=init)})

    def elaborate(self, platform):
        m = Module()
        req = Signal()
        ack = Signal()
        hold = Signal(self.width, init=self.init)
        req_i = Signal()
        ack_o = Signal()
        m.submodules.req_sync = FFSynchronizer(req, req_i, o_domain=self.i_domain,
                                               stages=self.stages)
        m.submodules.ack_sync = FFSynchronizer(ack, ack_o, o_domain=self.o_domain,
                                               stages=self.stages)
        with m.If(req_i != ack):
            m.d[self.i_domain] += [hold.eq(self.i), ack.eq(req_i)]
        with m.If(ack_o == req):
            m.d[self.o_domain] += [self.o.eq(hold), req.eq(~req)]
        return m


def clock_edges(period, phase, t_end):
    """Rising-edge times ``phase + k * period`` (``k >= 0``) before ``t_end``, as integers.

    Times are integers (e.g. picoseconds) so that coinciding edges compare equal."""
    return list(range(phase, t_end, period))


def bus_sync_model(i_values, *, i_period, i_phase, o_period, o_phase, n_o, stages=2, init=0):
    """Edge-by-edge model of :class:`BusSync`.

    ``i_values[k]`` is the value of ``i`` at ``i_domain`` edge ``k`` (edges at
    ``i_phase + k * i_period``; the last value holds after the array ends); ``o_domain`` edges
    are at ``o_phase + j * o_period``. Times are integers. Edges that coincide are applied
    together from the state before them (as flip-flops do). Returns the list of ``o`` just
    before each of the first ``n_o`` ``o_domain`` edges (what ``ctx.tick().sample()`` gives).
    """
    t_end = o_phase + n_o * o_period
    events = [(t, 0, k) for k, t in enumerate(clock_edges(i_period, i_phase, t_end))]
    events += [(t, 1, j) for j, t in enumerate(clock_edges(o_period, o_phase, t_end))]
    events.sort()
    req = ack = 0
    req_s = [0] * stages            # synchroniser of req into i_domain; [-1] is req_i
    ack_s = [0] * stages
    hold = o = init
    out = []
    i = 0
    while i < len(events):
        t = events[i][0]
        group = []
        while i < len(events) and events[i][0] == t:
            group.append(events[i])
            i += 1
        old = dict(req=req, ack=ack, req_s=list(req_s), ack_s=list(ack_s), hold=hold, o=o)
        for _, side, k in group:
            if side == 0:           # i_domain edge
                req_s = [old["req"]] + old["req_s"][:-1]
                if old["req_s"][-1] != old["ack"]:
                    hold = int(i_values[min(k, len(i_values) - 1)])
                    ack = old["req_s"][-1]
            else:                   # o_domain edge
                out.append(old["o"])
                ack_s = [old["ack"]] + old["ack_s"][:-1]
                if old["ack_s"][-1] == old["req"]:
                    o = old["hold"]
                    req = 1 - old["req"]
    return out[:n_o]
