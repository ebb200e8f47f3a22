"""Ethernet core: RGMII pins to the node's register byte streams and the record stream.

:class:`EthernetCore` = :class:`~.mac.RGMII` + :class:`~.mac.MacRx` (in the PHY's receive clock
domain) + an asynchronous FIFO into ``sync`` + :class:`~.stack.NetStack` + :class:`~.mac.MacTx`.
``sync`` must run at 125 MHz (1000BASE-T). The core defines the local domain ``eth_rx`` clocked
by ``rx_clk``; with ``tx_clk_mode="domain"`` the parent must provide a ``tx90`` domain (``sync``
shifted by +90°).

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
from amaranth.hdl import ClockDomain, Const, Elaboratable, Module, Signal
from amaranth.lib import data, fifo, io, stream, wiring
from amaranth.lib.wiring import In, Out

from ..regs import Access, Reg
from .mac import RGMII, MacRx, MacTx, Octet
from .stack import NetStack

__all__ = ["EthernetCore", "RGMIIPins", "CounterRecordSource", "counter_source_model"]


class EthernetCore(wiring.Component):
    """See the module docstring. Parameters are passed to :class:`~.stack.NetStack` and
    :class:`~.mac.RGMII` (``tx_clk_mode``, ``tx_delay_ps``, ``rx_delay_ps``)."""

    def __init__(self, *, tx_clk_mode="domain", tx_delay_ps=2000, rx_delay_ps=0, **stack_kw):
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
            if name not in members:
                members[name] = member
        super().__init__(members)

    def registers(self):
        """The stack's registers plus ``tx_underruns``."""
        return self.stack.registers() + [
            Reg("tx_underruns", 32, Access.R,
                doc="Frames cut short because their source stopped mid-frame.")]

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
