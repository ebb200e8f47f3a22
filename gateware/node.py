"""Node tops: the register bridge, the register bank, identity registers and the node's blocks.

Two node kinds exist: ``transmitter`` (Alice / Bob: pattern generators, laser and comb locks,
phase actuator) and ``relay`` (Charlie: time tagger, classifier, histograms, phase estimation).
A node top is board independent: it talks to the host through two byte streams into and out of
the register bridge, and a board file wraps a UART (or Ethernet) and the pins around it.

Identity registers (the same first addresses on every node)
-----------------------------------------------------------
========  =============  ======  ==================================================================
address   name           access  value
========  =============  ======  ==================================================================
0x0000    ``magic``      R       :data:`MAGIC` (``"CKEY"`` in ASCII, 0x434B4559)
0x0001    ``map_hash``   R       :meth:`RegisterMap.map_hash` of this node's map
0x0002    ``node_kind``  R       :data:`NODE_KINDS` code (1 transmitter, 2 relay)
0x0003    ``version``    R       gateware version: first 8 hex digits of the git commit, or 0
0x0004    ``clk_hz``     R       system clock frequency in Hz
0x0005    ``scratch``    RW      free for the host (link tests)
0x0006    ``uptime``     R       64-bit count of system clock cycles since reset (2 words)
========  =============  ======  ==================================================================

The host reads ``magic``, ``map_hash`` and ``node_kind`` by address before anything else, builds
the map for that kind, and refuses the node when the hashes differ. Then come the bridge's
counters (``bridge.*``) and the blocks' registers (``<block>.*``).

Members
-------
rx : In(stream.Signature(8))
    Request bytes for the bridge.
tx : Out(stream.Signature(8))
    Response bytes from the bridge.
heartbeat : Out(1)
    Toggles at about 1 Hz (for an LED).
link_framing_errors, link_overruns : In(16)
    Error counters of the physical link around the node (the UART's framing errors and bytes
    dropped on overrun), mapped to the registers ``link.framing_errors`` and ``link.overruns``.
"""
import os
import subprocess

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .bridge import RegBridge
from .regs import Access, Reg, RegisterBank, RegisterMap, connect_registers

__all__ = ["MAGIC", "NODE_KINDS", "IDENTITY_REGS", "Node", "TransmitterNode", "RelayNode",
           "node_class", "node_regmap", "gateware_version"]

MAGIC = 0x434B4559
NODE_KINDS = {"transmitter": 1, "relay": 2}


def gateware_version():
    """First 8 hex digits of the source tree's git commit, as an int; 0 when not in git."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "--short=8", "HEAD"], cwd=here,
                             capture_output=True, text=True, timeout=5, check=True)
        return int(out.stdout.strip()[:8], 16)
    except (OSError, subprocess.SubprocessError, ValueError):
        return 0


IDENTITY_REGS = [
    Reg("magic", 32, Access.R, reset=MAGIC, doc="Constant 0x434B4559 ('CKEY'): a combkey node."),
    Reg("map_hash", 32, Access.R, doc="Hash of this node's register map (see regmap)."),
    Reg("node_kind", 8, Access.R, doc="Node kind: 1 transmitter, 2 relay."),
    Reg("version", 32, Access.R, doc="Gateware version: git commit prefix (0 when unknown)."),
    Reg("clk_hz", 32, Access.R, doc="System clock frequency in Hz."),
    Reg("scratch", 32, Access.RW, doc="Free register for link tests."),
    Reg("uptime", 64, Access.R, doc="System clock cycles since reset."),
]


LINK_REGS = [
    Reg("framing_errors", 16, Access.R, doc="Bytes the link's receiver dropped for a bad stop "
        "bit (saturating)."),
    Reg("overruns", 16, Access.R, doc="Bytes the link dropped because the bridge was busy "
        "(saturating)."),
]


class Node(wiring.Component):
    """Base of the node tops: bridge + bank + identity + the blocks of a subclass.

    Parameters
    ----------
    clk_hz : int
        System clock frequency (Hz), reported in ``clk_hz`` and used for the heartbeat.
    timeout_cycles : int or None
        Bridge idle timeout inside a frame; default: 2 ms worth of cycles (a frame at 115200
        baud has at most 87 us between bytes).

    Subclasses set :attr:`kind` and implement :meth:`blocks` returning ``[(prefix, block)]`` of
    components with ``registers()`` (see :func:`~combkey.gateware.regs.connect_registers`), and
    may add members with :meth:`extra_members`.
    """

    kind = None

    def __init__(self, *, clk_hz=100_000_000, timeout_cycles=None):
        if self.kind not in NODE_KINDS:
            raise TypeError(f"node kind must be one of {sorted(NODE_KINDS)}, not {self.kind!r}")
        if not isinstance(clk_hz, int) or not 1_000_000 <= clk_hz <= 1_000_000_000:
            raise ValueError(f"clk_hz must be an integer in [1e6, 1e9], not {clk_hz!r}")
        self.clk_hz = clk_hz
        self.timeout_cycles = timeout_cycles or max(16, clk_hz // 500)
        self._blocks = list(self.blocks())
        self.regmap = RegisterMap([("", IDENTITY_REGS), ("bridge", RegBridge.registers()),
                                   ("link", LINK_REGS)] +
                                  [(prefix, block.registers()) for prefix, block in self._blocks])
        self.version = gateware_version()
        super().__init__({"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
                          "heartbeat": Out(1), "link_framing_errors": In(16),
                          "link_overruns": In(16), **self.extra_members()})

    def blocks(self):
        """Return ``[(prefix, block)]``: the components whose registers the node maps."""
        return []

    def extra_members(self):
        """Return extra signature members (block I/O brought to the board)."""
        return {}

    def elaborate_blocks(self, m, platform):
        """Connect block I/O other than registers (hook for subclasses)."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = RegBridge(map_size=self.regmap.size,
                                                 timeout_cycles=self.timeout_cycles)
        m.submodules.bank = bank = RegisterBank(self.regmap)
        wiring.connect(m, bridge.bus, bank.bus)
        wiring.connect(m, wiring.flipped(self.rx), bridge.rx)
        wiring.connect(m, bridge.tx, wiring.flipped(self.tx))

        uptime = Signal(64)
        m.d.sync += uptime.eq(uptime + 1)
        m.d.comb += [
            bank.reg("magic").data.eq(MAGIC),
            bank.reg("map_hash").data.eq(self.regmap.map_hash()),
            bank.reg("node_kind").data.eq(NODE_KINDS[self.kind]),
            bank.reg("version").data.eq(self.version),
            bank.reg("clk_hz").data.eq(self.clk_hz),
            bank.reg("uptime").data.eq(uptime),
        ]
        m.d.comb += [bank.reg("link.framing_errors").data.eq(self.link_framing_errors),
                     bank.reg("link.overruns").data.eq(self.link_overruns)]
        for name in RegBridge.COUNTERS:
            m.d.comb += bank.reg(f"bridge.{name}").data.eq(getattr(bridge, name))

        half = max(1, self.clk_hz // 2)
        beat = Signal(range(half))
        with m.If(beat == half - 1):
            m.d.sync += [beat.eq(0), self.heartbeat.eq(~self.heartbeat)]
        with m.Else():
            m.d.sync += beat.eq(beat + 1)

        for prefix, block in self._blocks:
            m.submodules[prefix.replace(".", "_")] = block
            connect_registers(m, bank, prefix, block)
        self.elaborate_blocks(m, platform)
        return m


class TransmitterNode(Node):
    """Transmitter node (Alice or Bob). Blocks are added as the pattern and loop issues land."""

    kind = "transmitter"


class RelayNode(Node):
    """Relay node (Charlie). Blocks are added as the tagger and phase issues land."""

    kind = "relay"


def node_regmap(kind, **params):
    """Return the :class:`RegisterMap` of a ``kind`` node built with ``params``.

    The node is elaborated once (without a platform) so that Amaranth does not warn about a
    component created only to read its map.
    """
    from amaranth.hdl import Fragment

    node = node_class(kind)(**params)
    Fragment.get(node, None)
    return node.regmap


def node_class(kind):
    """Return the node top class for ``kind`` (``transmitter`` or ``relay``)."""
    classes = {"transmitter": TransmitterNode, "relay": RelayNode}
    if kind not in classes:
        raise ValueError(f"node must be one of {sorted(classes)}, not {kind!r}")
    return classes[kind]
