"""Ethernet core: RGMII pins to the node's register byte streams and the record stream.

:class:`EthernetCore` = :class:`~.mac.RGMII` + :class:`~.mac.MacRx` (in the PHY's receive
clock domain ``eth_rx``, local, clocked by ``rx_clk``) + an asynchronous FIFO +
:class:`~.stack.NetStack` + :class:`~.mac.MacTx`. The stack and the MAC run in the clock
domain named by ``domain``, which must run at 125 MHz (1000BASE-T byte clock); with
``tx_clk_mode="domain"`` the parent must also provide a ``tx90`` domain (``domain`` shifted by
+90°).

Clock domains
-------------
* ``domain="sync"`` (default): no crossing; ``sync`` must run at 125 MHz.
* any other ``domain`` (the boards use ``"eth"``): every member but the RGMII pins is in
  ``sync``, whatever its frequency. The byte streams ``reg_rx`` / ``reg_tx`` and the record
  stream cross in one :class:`amaranth.lib.fifo.AsyncFIFO` each (``cdc_depth`` entries). The
  registers cross by one :class:`~.cdc.BusSync` (toggle handshake) each, so every value arrives
  whole: the configuration (``mac``, ``ip``, ``reg_port``, ``stream_port``) and
  ``upstream_dropped`` from ``sync`` into ``domain``, the status (``subscribed``, every counter,
  ``tx_underruns``) back. A register write reaches the stack, and a counter reaches its
  register, within two handshake round trips (each at most 3 cycles of each clock: 168 ns at
  50/125 MHz). Records are taken from ``records`` only while the (synchronised) ``subscribed``
  is 1; those accepted in the last round trip before a stop stay in the crossing FIFO and lead
  the next stream.

Members
-------
rx_clk, rx_ctl : In(1); rxd : In(4); tx_clk, tx_ctl : Out(1); txd : Out(4)
    RGMII pins (connect them to the board's ``rgmii`` resource through ``io.Buffer``).
reg_rx : Out(stream.Signature(8)); reg_tx : In(stream.Signature(8))
    To and from the node's register bridge (``node.rx`` / ``node.tx``).
records : In(stream.Signature(64)); upstream_dropped : In(32)
    The record stream (see :mod:`.stack`).
registers : every member named by :meth:`EthernetCore.registers` (the stack's registers plus
    ``tx_underruns``), for :func:`~combkey.gateware.regs.connect_registers`.

:class:`CounterRecordSource` is a test pattern: record ``k`` is the 64-bit value ``k``, offered
every ``period`` cycles while ``enable`` is set (``period`` 1 = every cycle); a record not
accepted when the next is due is counted in ``dropped`` and skipped, so ``k`` stays the record's
index and the host can verify the stream end to end. Its model is :func:`counter_source_model`.
"""
import numpy as np
from amaranth.hdl import ClockDomain, Const, DomainRenamer, Elaboratable, Module, Signal
from amaranth.lib import data, fifo, io, stream, wiring
from amaranth.lib.wiring import In, Out

from ..regs import Access, Reg
from .cdc import BusSync
from .mac import RGMII, MacRx, MacTx, Octet
from .stack import NetStack

__all__ = ["EthernetCore", "RGMIIPins", "CounterRecordSource", "counter_source_model"]


#: Stream members of the core and the direction of their crossing when ``domain`` differs
#: from ``sync`` (``"out"``: core -> ``sync``).
_STREAMS = {"reg_rx": ("out", 8), "reg_tx": ("in", 8), "records": ("in", 64)}
#: RGMII pin members: not clocked by ``sync``, passed straight through.
_PINS = ("rx_clk", "rx_ctl", "rxd", "tx_clk", "tx_ctl", "txd")


class _SameClockCore(wiring.Component):
    """RGMII + MAC + stack, everything but ``eth_rx`` in ``sync`` (see the module docstring)."""

    def __init__(self, stack, rgmii, members):
        self.stack = stack
        self.rgmii = rgmii
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.domains.eth_rx = cd_rx = ClockDomain("eth_rx", local=True)
        m.d.comb += [cd_rx.clk.eq(self.rx_clk), cd_rx.rst.eq(Const(0))]
        m.submodules.rgmii = rgmii = self.rgmii
        m.submodules.mac_rx = mac_rx = MacRx(domain="eth_rx")
        m.submodules.rx_cdc = rx_cdc = fifo.AsyncFIFO(
            width=data.Layout.cast(Octet).size, depth=32, r_domain="sync", w_domain="eth_rx")
        m.submodules.stack = stack = self.stack
        m.submodules.mac_tx = mac_tx = MacTx()

        m.d.comb += [rgmii.rx_clk.eq(self.rx_clk), rgmii.rx_ctl.eq(self.rx_ctl),
                     rgmii.rxd.eq(self.rxd), self.tx_clk.eq(rgmii.tx_clk),
                     self.tx_ctl.eq(rgmii.tx_ctl), self.txd.eq(rgmii.txd)]
        m.d.comb += [mac_rx.rx_dv.eq(rgmii.gmii_rx_dv), mac_rx.rx_er.eq(rgmii.gmii_rx_er),
                     mac_rx.rxd.eq(rgmii.gmii_rxd)]
        m.d.comb += [rx_cdc.w_data.eq(mac_rx.o.payload), rx_cdc.w_en.eq(mac_rx.o.valid),
                     stack.rx.payload.eq(rx_cdc.r_data), stack.rx.valid.eq(rx_cdc.r_rdy),
                     rx_cdc.r_en.eq(stack.rx.ready)]
        wiring.connect(m, stack.tx, mac_tx.i)
        m.d.comb += [rgmii.gmii_tx_en.eq(mac_tx.tx_en), rgmii.gmii_tx_er.eq(mac_tx.tx_er),
                     rgmii.gmii_txd.eq(mac_tx.txd), self.tx_underruns.eq(mac_tx.tx_underruns)]
        wiring.connect(m, wiring.flipped(self.reg_rx), stack.reg_rx)
        wiring.connect(m, stack.reg_tx, wiring.flipped(self.reg_tx))
        wiring.connect(m, stack.records, wiring.flipped(self.records))
        m.d.comb += stack.upstream_dropped.eq(self.upstream_dropped)
        for name, member in stack.signature.members.items():
            if name in ("rx", "tx", "reg_rx", "reg_tx", "records", "upstream_dropped"):
                continue
            if member.flow is In:
                m.d.comb += getattr(stack, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(stack, name))
        return m


class EthernetCore(wiring.Component):
    """See the module docstring.

    Parameters
    ----------
    domain : str
        Clock domain of the stack and the MAC (125 MHz); every member but the RGMII pins is in
        ``sync``. Default ``"sync"`` (no crossing: ``sync`` must then run at 125 MHz).
    cdc_depth : int
        Depth of each crossing FIFO when ``domain`` is not ``sync`` (power of 2, >= 4).
    tx_clk_mode, tx_delay_ps, rx_delay_ps
        Passed to :class:`~.mac.RGMII`.
    **stack_kw
        Passed to :class:`~.stack.NetStack`.
    """

    def __init__(self, *, domain="sync", cdc_depth=16, tx_clk_mode="domain", tx_delay_ps=2000,
                 rx_delay_ps=0, **stack_kw):
        if not isinstance(domain, str) or not domain.isidentifier() or domain == "eth_rx":
            raise ValueError(f"domain must be a clock domain name other than 'eth_rx', "
                             f"not {domain!r}")
        if isinstance(cdc_depth, bool) or not isinstance(cdc_depth, int) or cdc_depth < 4 or \
                cdc_depth & (cdc_depth - 1):
            raise ValueError(f"cdc_depth must be a power of 2 >= 4, not {cdc_depth!r}")
        self.domain = domain
        self.cdc_depth = cdc_depth
        self.stack = NetStack(**stack_kw)
        self.rgmii = RGMII(rx_domain="eth_rx", tx_clk_mode=tx_clk_mode,
                           tx_delay_ps=tx_delay_ps, rx_delay_ps=rx_delay_ps)
        members = {
            "rx_clk": In(1), "rx_ctl": In(1), "rxd": In(4),
            "tx_clk": Out(1), "tx_ctl": Out(1), "txd": Out(4),
            "reg_rx": Out(stream.Signature(8)), "reg_tx": In(stream.Signature(8)),
            "records": In(stream.Signature(64)), "upstream_dropped": In(32),
            "tx_underruns": Out(32),
        }
        for name, member in self.stack.signature.members.items():
            if name not in members and name not in ("rx", "tx"):
                members[name] = member
        self._core = _SameClockCore(self.stack, self.rgmii, members)
        super().__init__(members)

    def registers(self):
        """The stack's registers plus ``tx_underruns``."""
        return self.stack.registers() + [
            Reg("tx_underruns", 32, Access.R,
                doc="Frames cut short because their source stopped mid-frame.")]

    def _plain(self, flow):
        """Names of the non-stream, non-pin members of direction ``flow``, in signature order."""
        return [name for name, member in self.signature.members.items()
                if name not in _STREAMS and name not in _PINS and member.is_port and
                member.flow is flow]

    def elaborate(self, platform):
        m = Module()
        core = self._core
        for name in _PINS:
            if self.signature.members[name].flow is In:
                m.d.comb += getattr(core, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(core, name))
        config, status = self._plain(In), self._plain(Out)
        if self.domain == "sync":
            m.submodules.core = core
            wiring.connect(m, core.reg_rx, wiring.flipped(self.reg_rx))
            wiring.connect(m, wiring.flipped(self.reg_tx), core.reg_tx)
            wiring.connect(m, wiring.flipped(self.records), core.records)
            m.d.comb += [getattr(core, n).eq(getattr(self, n)) for n in config]
            m.d.comb += [getattr(self, n).eq(getattr(core, n)) for n in status]
            return m

        dom = self.domain
        m.submodules.core = DomainRenamer({"sync": dom})(core)
        for name, (way, width) in _STREAMS.items():
            w_domain, r_domain = (dom, "sync") if way == "out" else ("sync", dom)
            m.submodules[f"{name}_cdc"] = cdc = fifo.AsyncFIFO(
                width=width, depth=self.cdc_depth, w_domain=w_domain, r_domain=r_domain)
            if way == "out":
                wiring.connect(m, getattr(core, name), cdc.w_stream)
                wiring.connect(m, cdc.r_stream, wiring.flipped(getattr(self, name)))
            elif name == "records":
                # Records are taken only while a subscriber exists (as without the crossing),
                # so that none wait in the crossing FIFO while nobody listens.
                src = self.records
                m.d.comb += [cdc.w_stream.payload.eq(src.payload),
                             cdc.w_stream.valid.eq(src.valid & self.subscribed),
                             src.ready.eq(cdc.w_stream.ready & self.subscribed)]
                wiring.connect(m, cdc.r_stream, core.records)
            else:
                wiring.connect(m, wiring.flipped(getattr(self, name)), cdc.w_stream)
                wiring.connect(m, cdc.r_stream, getattr(core, name))
        # Configuration (and the upstream loss count) into the stack's domain, status back: one
        # BusSync per register, so each value crosses whole and no handshake enable fans out to
        # more than 48 flip-flops (one snapshot of all 545 status bits would).
        for names, i_dom, o_dom, src, dst in ((config, "sync", dom, self, core),
                                              (status, dom, "sync", core, self)):
            for n in names:
                init = self.signature.members[n].init or 0 if src is self else 0
                m.submodules[f"{n}_cdc"] = cdc = BusSync(len(getattr(self, n)), i_domain=i_dom,
                                                         o_domain=o_dom, init=init)
                m.d.comb += [cdc.i.eq(getattr(src, n)), getattr(dst, n).eq(cdc.o)]
        return m


class RGMIIPins(Elaboratable):
    """Board glue: connect an :class:`EthernetCore` to the pins of an ``eth_rgmii`` resource.

    ``pins`` is ``platform.request("eth_rgmii", n, dir="-")`` (amaranth-boards names:
    ``tx_clk``, ``tx_ctrl``, ``tx_data``, ``rx_clk``, ``rx_ctrl``, ``rx_data``, optional ``rst``,
    ``mdc``, ``mdio``). Each pin gets an ``io.Buffer``; the DDR registers and delays are the
    core's. The PHY reset (when present) is held for ``reset_cycles`` after configuration and
    then released; MDC is held low and MDIO released (the PHY runs on its strapped defaults).
    """

    def __init__(self, pins, core, *, reset_cycles=125_000):
        self.pins = pins
        self.core = core
        self.reset_cycles = reset_cycles

    def elaborate(self, platform):
        m = Module()
        pins, core = self.pins, self.core

        def buf(name, direction):
            b = io.Buffer(direction, getattr(pins, name))
            m.submodules[f"pin_{name}"] = b
            return b

        m.d.comb += [core.rx_clk.eq(buf("rx_clk", "i").i), core.rx_ctl.eq(buf("rx_ctrl", "i").i),
                     core.rxd.eq(buf("rx_data", "i").i)]
        m.d.comb += [buf("tx_clk", "o").o.eq(core.tx_clk), buf("tx_ctrl", "o").o.eq(core.tx_ctl),
                     buf("tx_data", "o").o.eq(core.txd)]
        names = set(dir(pins))
        if "rst" in names:
            count = Signal(range(self.reset_cycles + 1))
            with m.If(count != self.reset_cycles):
                m.d.sync += count.eq(count + 1)
            m.d.comb += buf("rst", "o").o.eq(count != self.reset_cycles)
        if "mdc" in names:
            m.d.comb += buf("mdc", "o").o.eq(0)
        if "mdio" in names:
            mdio = buf("mdio", "io")
            m.d.comb += [mdio.oe.eq(0), mdio.o.eq(0)]
        return m


class CounterRecordSource(wiring.Component):
    """Test pattern of records (see the module docstring).

    Members
    -------
    enable : In(1); period : In(16) (cycles per record, >= 1)
    o : Out(stream.Signature(64))
    dropped : Out(32)        records skipped because ``o`` was not ready in time.
    """

    def __init__(self):
        super().__init__({"enable": In(1), "period": In(16, init=1),
                          "o": Out(stream.Signature(64)), "dropped": Out(32)})

    def elaborate(self, platform):
        m = Module()
        index = Signal(64)
        timer = Signal(16)
        m.d.comb += self.o.payload.eq(index)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [self.o.valid.eq(0), index.eq(index + 1)]
        with m.If(self.enable):
            with m.If(timer == 0):
                m.d.sync += timer.eq(self.period - 1)
                # A record is due: if the previous one is still waiting, it is skipped.
                with m.If(self.o.valid & ~self.o.ready):
                    m.d.sync += [self.dropped.eq(self.dropped + 1), index.eq(index + 1)]
                m.d.sync += self.o.valid.eq(1)
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


def counter_source_model(enable, ready, period):
    """Per-cycle model of :class:`CounterRecordSource`.

    ``enable`` and ``ready`` are per-cycle 0/1 arrays; returns ``(valid, payload, dropped)``
    arrays of the outputs seen in each cycle (before that cycle's clock edge)."""
    n = len(enable)
    valid = np.zeros(n, np.uint8)
    payload = np.zeros(n, np.uint64)
    dropped = np.zeros(n, np.uint64)
    v, idx, timer, drop = 0, 0, 0, 0
    for t in range(n):
        valid[t], payload[t], dropped[t] = v, idx, drop
        nv, nidx, ntimer, ndrop = v, idx, timer, drop
        if v and ready[t]:
            nv, nidx = 0, idx + 1
        if enable[t]:
            if timer == 0:
                ntimer = max(period - 1, 0) & 0xFFFF
                if v and not ready[t]:
                    ndrop, nidx = drop + 1, idx + 1
                nv = 1
            else:
                ntimer = timer - 1
        v, idx, timer, drop = nv, nidx & (2**64 - 1), ntimer, ndrop
    return valid, payload, dropped
