"""Node tops: the register bridge, the register bank, identity registers and the node's blocks.

Two node kinds exist: ``transmitter`` (Alice / Bob: pattern generators, laser and comb locks,
phase actuator) and ``relay`` (Charlie: time tagger, classifier, histograms, phase estimation).
A node top is board independent: it talks to the host through two byte streams into and out of
the register bridge, and a board file wraps a UART (or Ethernet) and the pins around it.

* :class:`TransmitterNode` ``(clk_hz, channels=C, lanes=L)``: ``pattern0..C-1``
  (:class:`~.pattern.generator.PatternGenerator`), ``opll`` on the 12-bit beat ADC, ``fcount`` +
  ``reprate`` (repetition-rate lock on the beat comparator), ``io`` (:class:`TransmitterIO`:
  beat ADC capture, phase actuator word). Port ``beat_adc`` (``beat_adc__data/clk/otr``).
* :class:`RelayNode` ``(clk_hz, channels=N, lines, taps, bins, ...)``: ``tdc``, ``slot``,
  ``tagger``, ``cls``, ``hist`` (:class:`~.timing.relay.TimingBlocks`), ``phase``
  (:class:`~.loops.phase_compensator.PhaseCompensator`), ``ref`` (:class:`RelayIO`: host
  reference events, estimates, record routing). Ports ``tdc.in`` (``tdc__in``) and
  ``link_records`` (64-bit :class:`~.timing.classifier.RecordWord` stream for an Ethernet link).

Defaults are small for the Python simulator (``sim://transmitter``, ``sim://relay``); boards
choose their sizes in ``Board.node_params``. The register map depends on the parameters, so
the host must build the map with the same parameters (``node_regmap(kind, **params)``).

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
0x0008    ``params``     R       the parameters that shape the map (:data:`PARAMS_ADDR`; per kind
                                 :attr:`Node.PARAM_FIELDS`): transmitter ``channels`` [7:0],
                                 ``lanes`` [11:8], ``prob_bits`` [16:12], ``phase_bits``
                                 [20:17], ``modulator`` [23:21]; relay ``channels`` [7:0];
                                 every kind: ``ethernet`` [31] (1 when the node has the
                                 ``net`` block)
========  =============  ======  ==================================================================

The host reads ``magic``, ``map_hash``, ``node_kind`` and ``params`` by address before anything
else, builds the map for that kind and those parameters (:func:`node_regmap_from_params`), and
refuses the node when the hashes differ. Then come the bridge's
counters (``bridge.*``) and the blocks' registers (``<block>.*``).

Ethernet: a node built with ``ethernet=True`` has one more block, ``net``
(:class:`~.net.core.EthernetCore`, built with ``ethernet_params``), after every other block, and
``params`` bit 31 set, so the host rebuilds the same map. The node only maps the core's
registers; the board connects its byte streams, record stream and pins
(:mod:`combkey.boards.ethernet`). Such a node also maps the counters of the board's link mux
(the UART and the UDP register port share the bridge), ``link.mux_timeouts``,
``link.mux_skipped`` and ``link.mux_answered`` (:data:`LINK_MUX_REGS`), just before ``net``;
a node without Ethernet keeps its map.

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
link_mux_timeouts, link_mux_skipped, link_mux_answered : In(32)
    Only with ``ethernet=True``: the board's link mux counters, mapped to ``link.mux_*``.
"""
import dataclasses
import os
import subprocess
from types import SimpleNamespace

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .bridge import RegBridge
from .dsp.freq_counter import FreqCounter
from .dsp.ref_phase import RefEvent, ref_estimate_layout
from .loops.opll import OPLL
from .loops.phase_compensator import PhaseCompensator
from .loops.reprate import RepRateLock
from .modout import RATIOS as MOD_RATIOS
from .modout import SLOTS_PER_FAST, ModulatorOutput, fast_clk_hz
from .pattern.generator import GeneratorParams, PatternGenerator
from .reftap import RefTap
from .regs import Access, Field, Reg, RegBus, RegisterBank, RegisterMap, connect_registers
from .spi import SPIADC, SPIDAC
from .timing.relay import TimingBlocks
from .timing.tdc import check_tdc_params

__all__ = ["MAGIC", "NODE_KINDS", "IDENTITY_REGS", "PARAMS_ADDR", "Node", "TransmitterNode",
           "RelayNode", "TransmitterIO", "RelayIO", "beat_capture_model", "node_class",
           "node_regmap", "node_regmap_from_params", "SplitBank", "ETHERNET_FIELD",
           "LINK_MUX_REGS", "gateware_version"]

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
    Reg("params", 32, Access.R, doc="Parameters shaping the register map (per node kind: "
        "transmitter channels[7:0] lanes[11:8] prob_bits[16:12] phase_bits[20:17]; relay "
        "channels[7:0])."),
]

#: Word address of the ``params`` identity register.
PARAMS_ADDR = 8
#: ``(name, offset, width)`` of the Ethernet flag in ``params`` (every node kind).
ETHERNET_FIELD = ("ethernet", 31, 1)
#: Modulator pins of a transmitter: im_code[1:0] and pm_code[1:0] of each slot.
MOD_PINS = 4


LINK_REGS = [
    Reg("framing_errors", 16, Access.R, doc="Bytes the link's receiver dropped for a bad stop "
        "bit (saturating)."),
    Reg("overruns", 16, Access.R, doc="Bytes the link dropped because the bridge was busy "
        "(saturating)."),
]

#: Counters of the link mux of a node with Ethernet (:class:`combkey.boards.ethernet.LinkMux`,
#: the UART and the UDP register port sharing the bridge), mapped as ``link.mux_*`` just before
#: the ``net`` block, only when ``ethernet=True``; node members ``link_mux_*`` (``In(32)``).
LINK_MUX_REGS = [
    Reg("mux_timeouts", 32, Access.R, doc="Link-mux turns ended by its idle timeout: a "
        "truncated request, or one the bridge dropped unanswered (wraps)."),
    Reg("mux_skipped", 32, Access.R, doc="Link-mux turns whose first byte was not the start "
        "byte 0xC5; that byte is dropped (wraps)."),
    Reg("mux_answered", 32, Access.R, doc="Retried writes the link mux answered as duplicates "
        "itself, without passing them to the bridge (wraps)."),
]


class SplitBank(wiring.Component):
    """A :class:`RegisterBank` cut into sub-banks of at most ``max_words`` words.

    The same bus behaviour as one bank (unmapped reads 0), but each sub-bank only decodes its
    own address range, so the read multiplexer is a few short chains ORed together instead of
    one chain as long as the map (the WebAssembly yosys' ABC9 exhausts its call stack on a
    single chain of about 130 words or more). ``reg(name)`` finds a register's port in its
    sub-bank.

    ``pipelined=True`` (what :class:`Node` uses) adds two register stages so that a bank spread
    over a large device meets timing: the bus request is registered per sub-bank (with the
    sub-bank's local address and hit already decoded), and the ORed read data is registered.
    Writes then take effect one cycle later and reads have latency :attr:`read_latency` = 3;
    requests stay in order. Without it: write at once, read latency 1.
    """

    def __init__(self, regmap, max_words=64, pipelined=False):
        self.pipelined = pipelined
        self.read_latency = 3 if pipelined else 1
        self.regmap = regmap
        self.parts = []                                 # (base, size, RegisterBank)
        chunk, base = [], 0
        for a, reg in regmap.all_resources():
            if chunk and a + reg.words - base > max_words and a % 2 == 0:
                self.parts.append((base, chunk))
                chunk, base = [], a
            chunk.append(dataclasses.replace(reg))
        if chunk:
            self.parts.append((base, chunk))
        banks = []
        for base, regs in self.parts:
            sub = RegisterMap([("", regs)])
            for r in regs:
                if sub.address(r.name) + base != regmap.address(r.name):
                    raise AssertionError(f"sub-bank address of {r.name!r} moved")
            banks.append((base, sub.size, RegisterBank(sub)))
        self.parts = banks
        self._owner = {r.name: bank for _, _, bank in banks for r in bank.regmap}
        super().__init__({"bus": In(RegBus)})

    def reg(self, name):
        """Return the port of register ``name`` (dotted name)."""
        if name not in self._owner:
            raise KeyError(f"no register named {name!r}")
        return self._owner[name].reg(name)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        r_data = 0
        dom = m.d.sync if self.pipelined else m.d.comb
        for i, (base, size, bank) in enumerate(self.parts):
            m.submodules[f"part{i}"] = bank
            hit = (bus.addr >= base) & (bus.addr < base + size)
            dom += [bank.bus.addr.eq(bus.addr - base), bank.bus.w_data.eq(bus.w_data),
                    bank.bus.w_en.eq(bus.w_en & hit), bank.bus.r_en.eq(bus.r_en & hit)]
            r_data = r_data | bank.bus.r_data
        dom += bus.r_data.eq(r_data)
        return m


class Node(wiring.Component):
    """Base of the node tops: bridge + bank + identity + the blocks of a subclass.

    Parameters
    ----------
    clk_hz : int
        System clock frequency (Hz), reported in ``clk_hz`` and used for the heartbeat.
    timeout_cycles : int or None
        Bridge idle timeout inside a frame; default: 2 ms worth of cycles (a frame at 115200
        baud has at most 87 us between bytes).
    ethernet : bool
        Append the ``net`` block (:class:`~.net.core.EthernetCore`) and set ``params`` bit 31.
    ethernet_params : dict or None
        Keyword arguments of :class:`~.net.core.EthernetCore` (clock domain, RGMII delays,
        addresses); they do not change the register map.

    Subclasses set :attr:`kind` and implement :meth:`blocks` returning ``[(prefix, block)]`` of
    components with ``registers()`` (see :func:`~combkey.gateware.regs.connect_registers`), and
    may add members with :meth:`extra_members`.
    """

    kind = None

    def __init__(self, *, clk_hz=100_000_000, timeout_cycles=None, ethernet=False,
                 ethernet_params=None):
        if self.kind not in NODE_KINDS:
            raise TypeError(f"node kind must be one of {sorted(NODE_KINDS)}, not {self.kind!r}")
        if not isinstance(clk_hz, int) or not 1_000_000 <= clk_hz <= 1_000_000_000:
            raise ValueError(f"clk_hz must be an integer in [1e6, 1e9], not {clk_hz!r}")
        if ethernet not in (False, True):       # 0 and 1 (from ``params``) compare equal
            raise ValueError(f"ethernet must be True or False, not {ethernet!r}")
        if ethernet_params is not None and not ethernet:
            raise ValueError(f"ethernet_params needs ethernet=True, not ethernet={ethernet!r}")
        self.clk_hz = clk_hz
        self.timeout_cycles = timeout_cycles or max(16, clk_hz // 500)
        self.ethernet = bool(ethernet)
        self.map_params = {**getattr(self, "map_params", {}), "ethernet": int(self.ethernet)}
        self._blocks = list(self.blocks())
        if self.ethernet:
            from .net.core import EthernetCore
            self.net = EthernetCore(**(ethernet_params or {}))
            self._blocks.append(("net", self.net))
        groups = [(prefix, block.registers()) for prefix, block in self._blocks]
        mux_members = {}
        if self.ethernet:       # the link mux's counters, just before ``net`` (still last)
            groups.insert(-1, ("link", LINK_MUX_REGS))
            mux_members = {f"link_{r.name}": In(r.width) for r in LINK_MUX_REGS}
        self.regmap = RegisterMap([("", IDENTITY_REGS), ("bridge", RegBridge.registers()),
                                   ("link", LINK_REGS)] + groups)
        self.version = gateware_version()
        super().__init__({"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
                          "heartbeat": Out(1), "link_framing_errors": In(16),
                          "link_overruns": In(16), **mux_members, **self.extra_members()})

    #: ``(name, offset, width)`` of the constructor parameters that shape the register map,
    #: packed into the ``params`` identity register.
    PARAM_FIELDS = ()

    def params_word(self):
        """Return the ``params`` register value (see :attr:`PARAM_FIELDS`, plus
        :data:`ETHERNET_FIELD`)."""
        word = 0
        for name, offset, width in (*self.PARAM_FIELDS, ETHERNET_FIELD):
            word |= (self.map_params[name] & ((1 << width) - 1)) << offset
        return word

    def blocks(self):
        """Return ``[(prefix, block)]``: the components whose registers the node maps."""
        return []

    def extra_members(self):
        """Return extra signature members (block I/O brought to the board)."""
        return {}

    def placed_blocks(self):
        """Return the prefixes of blocks that :meth:`elaborate_blocks` adds as submodules itself
        (the base class adds every other block under its prefix)."""
        return ()

    def register_view(self, prefix, block):
        """Return the object whose registers are wired to the bank for ``(prefix, block)``
        (hook: a subclass may hide a strobe member to drive it itself)."""
        return block

    def elaborate_blocks(self, m, platform, bank):
        """Connect block I/O other than registers (hook for subclasses); ``bank`` is the
        node's :class:`RegisterBank`."""

    def elaborate(self, platform):
        m = Module()
        bank = SplitBank(self.regmap, pipelined=True)
        m.submodules.bridge = bridge = RegBridge(map_size=self.regmap.size,
                                                 timeout_cycles=self.timeout_cycles,
                                                 read_latency=bank.read_latency)
        m.submodules.bank = bank
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
            bank.reg("params").data.eq(self.params_word()),
        ]
        m.d.comb += [bank.reg("link.framing_errors").data.eq(self.link_framing_errors),
                     bank.reg("link.overruns").data.eq(self.link_overruns)]
        if self.ethernet:
            for r in LINK_MUX_REGS:
                m.d.comb += bank.reg(f"link.{r.name}").data.eq(getattr(self, f"link_{r.name}"))
        for name in RegBridge.COUNTERS:
            m.d.comb += bank.reg(f"bridge.{name}").data.eq(getattr(bridge, name))

        half = max(1, self.clk_hz // 2)
        beat = Signal(range(half))
        with m.If(beat == half - 1):
            m.d.sync += [beat.eq(0), self.heartbeat.eq(~self.heartbeat)]
        with m.Else():
            m.d.sync += beat.eq(beat + 1)

        placed = set(self.placed_blocks())
        for prefix, block in self._blocks:
            if prefix not in placed:
                m.submodules[prefix.replace(".", "_")] = block
            connect_registers(m, bank, prefix, self.register_view(prefix, block))
        self.elaborate_blocks(m, platform, bank)
        return m


def beat_capture_model(words, otr, beat_div):
    """Cycle model of :class:`TransmitterIO`'s beat ADC capture (``sample`` always ready).

    ``words``, ``otr``: the ADC word and out-of-range flag seen at each clock edge. Returns a
    dict of arrays, one entry per edge, of the values just after it: ``clk`` (sample clock),
    ``valid`` (``sample.valid``), ``sample`` (``beat_sample``) and ``otr_count``.
    """
    n = len(words)
    out = {k: np.zeros(n, np.int64) for k in ("clk", "valid", "sample", "otr_count")}
    div = clk = sample = count = 0
    for k in range(n):
        wrap = div + 1 >= beat_div
        rise = wrap and not clk
        if rise:
            v = int(words[k]) ^ 0x800
            sample = v - 4096 if v >= 2048 else v
            count = (count + int(otr[k])) & 0xFFFF_FFFF
        clk = clk ^ 1 if wrap else clk
        div = 0 if wrap else div + 1
        out["clk"][k], out["valid"][k] = clk, int(rise)
        out["sample"][k], out["otr_count"][k] = sample, count
    return out


class TransmitterIO(wiring.Component):
    """Transmitter glue (prefix ``io``): beat ADC capture, actuator words, phase actuator.

    Members
    -------
    beat_data : In(12)
        Parallel beat-note ADC word (offset binary, AD9226 class), registered at the pins.
    beat_clk : Out(1)
        ADC sample clock: toggles every ``beat_div`` cycles (``f_s = f_clk / (2 beat_div)``).
    beat_otr : In(1)
        ADC out-of-range flag.
    sample : Out(stream.Signature(signed(12)))
        One two's-complement sample (``beat_data ^ 0x800``) per ADC clock period, taken in the
        cycle the sample clock rises; samples ``sample`` does not accept count in
        ``beat_overruns``.
    comparator : Out(1)
        Sign of the last sample inverted (1 when the beat is above mid-scale), for the
        repetition-rate frequency counter.
    phase_word : In(signed(16))
        RW register: the phase actuator word (turns / 2**16), set by the host from the relay's
        estimates.

    Registers: ``beat_div`` (RW 8, reset 1; 0 acts as 1), ``beat_sample`` (R 12 signed),
    ``otr_count`` (R 32, samples flagged out of range, wrapping), ``beat_overruns`` (R 32),
    ``phase_word`` (RW 16 signed). The loops' own ``act`` and ``monitor.locked`` registers give
    their actuator words and lock states. Latency: a sample leaves on ``sample`` one cycle after the
    sample clock rises (the pin flip-flop on the board adds one more).
    """

    def __init__(self):
        members = {
            "beat_data": In(12), "beat_clk": Out(1), "beat_otr": In(1),
            "sample": Out(stream.Signature(signed(12))), "comparator": Out(1),
        }
        for reg in self.registers():
            members[reg.attr()] = (Out if reg.access is Access.R else In)(
                signed(reg.width) if reg.signed else reg.width)
        super().__init__(members)

    @staticmethod
    def registers():
        return [
            Reg("beat_div", 8, Access.RW, 1, "Beat ADC clock half period, system clock cycles "
                "(f_s = f_clk / (2 beat_div)); 0 acts as 1."),
            Reg("beat_sample", 12, Access.R, 0, "Last beat ADC sample (two's complement).",
                signed=True),
            Reg("otr_count", 32, Access.R, 0, "Beat ADC samples flagged out of range (wraps)."),
            Reg("beat_overruns", 32, Access.R, 0, "Beat samples the OPLL did not accept."),
            Reg("phase_word", 16, Access.RW, 0, "Phase actuator word, turns / 2**16.",
                signed=True),
        ]

    def elaborate(self, platform):
        m = Module()
        div = Signal(8)
        with m.If(div + 1 >= self.beat_div):
            m.d.sync += [div.eq(0), self.beat_clk.eq(~self.beat_clk)]
        with m.Else():
            m.d.sync += div.eq(div + 1)
        rise = Signal()
        m.d.comb += rise.eq((div + 1 >= self.beat_div) & ~self.beat_clk)
        value = Signal(signed(12))
        m.d.comb += value.eq(self.beat_data ^ 0x800)
        with m.If(self.sample.valid & self.sample.ready):
            m.d.sync += self.sample.valid.eq(0)
        with m.If(rise):
            m.d.sync += [self.sample.valid.eq(1), self.sample.payload.eq(value),
                         self.beat_sample.eq(value), self.comparator.eq(~value[-1])]
            with m.If(self.sample.valid & ~self.sample.ready):
                m.d.sync += self.beat_overruns.eq(self.beat_overruns + 1)
            with m.If(self.beat_otr):
                m.d.sync += self.otr_count.eq(self.otr_count + 1)
        return m


class TransmitterNode(Node):
    """Transmitter node (Alice or Bob): C pattern channels of L lanes, OPLL, rep-rate lock.

    Parameters
    ----------
    clk_hz, timeout_cycles
        As :class:`Node`.
    channels : int
        C, pattern generator channels (comb lines), 1..16; blocks ``pattern0`` ...
    lanes : int
        L, slots per clock of each channel: 1, 2, 4 or 8.
    prob_bits, phase_bits : int
        As :class:`~combkey.gateware.pattern.generator.GeneratorParams` (same for every
        channel).

    Blocks (register prefixes): ``pattern<c>`` (:class:`PatternGenerator`), ``opll``
    (:class:`~combkey.gateware.loops.opll.OPLL`, 12-bit beat ADC), ``fcount``
    (:class:`~combkey.gateware.dsp.freq_counter.FreqCounter` on the beat comparator),
    ``reprate`` (:class:`~combkey.gateware.loops.reprate.RepRateLock` on those counts), ``io``
    (:class:`TransmitterIO`), ``dac`` (:class:`~combkey.gateware.spi.SPIDAC`, fed by the OPLL's
    actuator words: laser current) and ``adc`` (:class:`~combkey.gateware.spi.SPIADC`, two slow
    monitor channels); members ``dac`` / ``adc`` (:func:`converter_members`).

    Extra members: ``beat_adc`` with ``data: In(12)``, ``clk: Out(1)``, ``otr: In(1)`` (flat
    names ``beat_adc__data``, ``beat_adc__clk``, ``beat_adc__otr`` in the board pin plans).

    With ``modulator=R`` (what the boards build: ``R = 4`` slots per pin per ``fast`` cycle for
    ODDRX2F gearing, ``2`` for ODDRX1F; ``True`` means 4) the node also drives its modulator
    pins: block ``mod`` (:class:`~combkey.gateware.modout.ModulatorOutput`: ``mod.enable``,
    ``mod.underflows``, ``mod.overflows``) carries channel 0's slots, ``{pm_code[1:0],
    im_code[1:0]}`` per slot, to the member ``mod.lanes: Out(4 * R)`` (flat ``mod__lanes``: 4
    pins x R slots per ``fast`` cycle). The node then needs a ``fast`` clock domain
    (:attr:`required_domains`) at :attr:`fast_clk_hz` = ``clk_hz * lanes / R``, which carries
    exactly the generator's slot rate. ``params`` bits [23:21] hold ``R`` (0: no modulator).
    """

    kind = "transmitter"
    PARAM_FIELDS = (("channels", 0, 8), ("lanes", 8, 4), ("prob_bits", 12, 5),
                    ("phase_bits", 17, 4), ("modulator", 21, 3))

    def __init__(self, *, clk_hz=100_000_000, timeout_cycles=None, channels=1, lanes=1,
                 prob_bits=16, phase_bits=4, modulator=False, ethernet=False,
                 ethernet_params=None):
        self.gen_params = self.check_map_params(channels=channels, lanes=lanes,
                                                prob_bits=prob_bits, phase_bits=phase_bits,
                                                modulator=modulator)
        self.channels = channels
        self.modulator = SLOTS_PER_FAST if modulator is True else int(modulator)
        self.required_domains = ("fast",) if self.modulator else ()
        self.fast_clk_hz = fast_clk_hz(clk_hz, lanes, self.modulator) if self.modulator else None
        self.map_params = dict(channels=channels, lanes=lanes, prob_bits=prob_bits,
                               phase_bits=phase_bits, modulator=self.modulator)
        super().__init__(clk_hz=clk_hz, timeout_cycles=timeout_cycles, ethernet=ethernet,
                         ethernet_params=ethernet_params)

    @staticmethod
    def check_map_params(*, channels, lanes, prob_bits, phase_bits, modulator=False):
        """Raise ``ValueError`` naming the parameter; return the :class:`GeneratorParams`."""
        if isinstance(channels, bool) or not isinstance(channels, int) or \
                not 1 <= channels <= 16:
            raise ValueError(f"channels must be an int in 1..16, not {channels!r}")
        if modulator is not True and (isinstance(modulator, bool) and modulator
                                      or modulator not in (0, *MOD_RATIOS)):
            raise ValueError(f"modulator must be False, True or one of {MOD_RATIOS}, "
                             f"not {modulator!r}")
        return GeneratorParams(lanes=lanes, prob_bits=prob_bits, phase_bits=phase_bits)

    def blocks(self):
        self.patterns = [PatternGenerator(self.gen_params) for _ in range(self.channels)]
        self.opll = OPLL(adc_width=12)
        self.fcount = FreqCounter(count_width=24)
        self.reprate = RepRateLock(count_width=24)
        self.io = TransmitterIO()
        blocks = ([(f"pattern{c}", g) for c, g in enumerate(self.patterns)]
                  + [("opll", self.opll), ("fcount", self.fcount), ("reprate", self.reprate),
                     ("io", self.io)])
        self.dacdrv, self.adcdrv = SPIDAC(), SPIADC()
        blocks += [("dac", self.dacdrv), ("adc", self.adcdrv)]
        if self.modulator:
            self.modout = ModulatorOutput(lanes=self.gen_params.lanes, pins=MOD_PINS,
                                          ratio=self.modulator)
            blocks.append(("mod", self.modout))
        return blocks

    def extra_members(self):
        members = {"beat_adc": Out(wiring.Signature({"data": In(12), "clk": Out(1),
                                                     "otr": In(1)})),
                   **converter_members()}
        if self.modulator:
            members["mod"] = Out(wiring.Signature({"lanes": Out(self.modulator * MOD_PINS)}))
        return members

    def elaborate_blocks(self, m, platform, bank):
        io_ = self.io
        m.d.comb += [io_.beat_data.eq(self.beat_adc.data), io_.beat_otr.eq(self.beat_adc.otr),
                     self.beat_adc.clk.eq(io_.beat_clk),
                     self.fcount.beat.eq(io_.comparator),
                     # The rep-rate actuator has no converter of its own on the pin plans: its
                     # word is read from ``reprate.act`` (a second DAC is a pin-plan change).
                     self.reprate.o.ready.eq(1)]
        connect_converters(m, self, self.opll.o)
        wiring.connect(m, io_.sample, self.opll.i)
        wiring.connect(m, self.fcount.o, self.reprate.i)
        if self.modulator:
            gen = self.patterns[0].o
            m.d.comb += [self.modout.i.valid.eq(gen.valid), self.mod.lanes.eq(self.modout.lanes)]
            for j in range(self.gen_params.lanes):
                slot = gen.payload[j]
                m.d.comb += self.modout.i.payload[j].eq(Cat(slot.im_code[:2], slot.pm_code[:2]))


class RelayIO(wiring.Component):
    """Relay glue (prefix ``ref``): reference events, phase estimates, record routing.

    Members
    -------
    ev : Out(stream.Signature(RefEvent))
        Reference events for the phase compensator, pushed by the host through the ``event``
        register (one-entry buffer; an event written while the buffer is still full is
        dropped and counted in ``event_drops``).
    est_in : In(stream.Signature(ref_estimate_layout(count_width)))
        Phase estimates; the latest untaken one is held for the ``est`` register (``est_in.ready``
        is low while one is held, so the compensator counts missed ones in ``phase.est_drops``).
    head : In(64), head_rd : In(1), pop : Out(1)
        The classifier's record FIFO head (:class:`RecordWord`, 0 when empty), the read strobe
        of its ``cls.records`` register, and the FIFO pop.
    records : Out(stream.Signature(64))
        The record stream for the Ethernet link (``link_records`` of the node): ``valid`` when
        the head holds a record and the host is not reading ``cls.records`` in this cycle; a
        record is popped by exactly one of the two readers, never duplicated or skipped.

    Registers: ``event`` (W1P 4: ``quad``, ``d0``, ``d1``, ``last``), ``event_drops`` (R 32),
    ``est`` (R 58 at count_width 10: bit 0 = an estimate is held, bits 1.. its
    ``ref_estimate_layout`` value; reading word 0 takes it), ``streamed`` (R 32, records
    delivered on ``records``, wrapping). The compensator's own ``phase.act`` and
    ``phase.monitor.locked`` registers give the actuator word and the lock state.
    """

    def __init__(self, count_width=10):
        self.est_layout = ref_estimate_layout(count_width)
        self.est_bits = 1 + data.Layout.cast(self.est_layout).size
        if self.est_bits > 64:
            raise ValueError(f"count_width must leave the estimate within 63 bits, "
                             f"not {count_width!r}")
        members = {
            "ev": Out(stream.Signature(RefEvent)),
            "est_in": In(stream.Signature(self.est_layout)),
            "head": In(64), "head_rd": In(1), "pop": Out(1),
            "records": Out(stream.Signature(64)),
            "event": In(4), "event_stb": In(1), "event_drops": Out(32),
            "est": Out(self.est_bits), "est_rd": In(1),
            "streamed": Out(32),
        }
        super().__init__(members)

    def registers(self):
        return [
            Reg("event", 4, Access.W1P, 0, "Push one reference event (RefEvent).",
                fields=(Field("quad", 0, 1, "reference phase 0 or pi/2"),
                        Field("d0", 1, 1, "D0 clicked"), Field("d1", 2, 1, "D1 clicked"),
                        Field("last", 3, 1, "last event of the reference period"))),
            Reg("event_drops", 32, Access.R, 0, "Events dropped: estimator busy (wraps)."),
            Reg("est", self.est_bits, Access.R, 0, "Latest phase estimate: bit 0 present, "
                "bits 1.. phase (16 s, turns / 2**16), n0a, n1a, n0b, n1b, valid_est; reading "
                "word 0 takes it."),
            Reg("streamed", 32, Access.R, 0, "Records delivered on the link record stream."),
        ]

    def elaborate(self, platform):
        m = Module()
        # Host-pushed reference events.
        with m.If(self.ev.valid & self.ev.ready):
            m.d.sync += self.ev.valid.eq(0)
        with m.If(self.event_stb):
            with m.If(~self.ev.valid | self.ev.ready):
                m.d.sync += [self.ev.valid.eq(1), self.ev.payload.eq(self.event)]
            with m.Else():
                m.d.sync += self.event_drops.eq(self.event_drops + 1)
        # Estimates held for the host.
        held = Signal()
        value = Signal(self.est_bits - 1)
        m.d.comb += [self.est_in.ready.eq(~held), self.est.eq(Cat(held, value))]
        with m.If(self.est_rd):
            m.d.sync += held.eq(0)
        with m.If(self.est_in.valid & ~held):
            m.d.sync += [held.eq(1), value.eq(self.est_in.payload)]
        # Records: register reads win; the stream takes the head otherwise.
        take = Signal()
        m.d.comb += [self.records.payload.eq(self.head),
                     self.records.valid.eq(self.head[0] & ~self.head_rd),
                     take.eq(self.records.valid & self.records.ready),
                     self.pop.eq(self.head_rd | take)]
        with m.If(take):
            m.d.sync += self.streamed.eq(self.streamed + 1)
        return m


class _HideMembers:
    """A block seen by ``connect_registers`` without some strobe members (driven elsewhere)."""

    def __init__(self, block, hide):
        self._block = block
        self.signature = SimpleNamespace(members={k: v for k, v in
                                                  block.signature.members.items()
                                                  if k not in hide})

    def registers(self):
        return self._block.registers()

    def __getattr__(self, name):
        return getattr(self._block, name)


class RelayNode(Node):
    """Relay node (Charlie): N tagger channels, classifier, histograms, phase loop, records.

    Parameters
    ----------
    clk_hz, timeout_cycles
        As :class:`Node`.
    channels : int
        N, detector inputs (1..32; the board pin plans have 2).
    lines, taps : int
        Carry-chain delay lines per channel and taps per line (:class:`TDC`).
    bins : int
        Histogram bins per channel.
    tag_depth, record_depth : int
        Tag and record FIFO depths (words).

    Blocks (register prefixes): ``tdc``, ``slot``, ``tagger``, ``cls``, ``hist``
    (:class:`~combkey.gateware.timing.relay.TimingBlocks`), ``phase``
    (:class:`~combkey.gateware.loops.phase_compensator.PhaseCompensator`, the reference-phase
    estimator and its loop), ``ref`` (:class:`RelayIO`), ``reftap``
    (:class:`~combkey.gateware.reftap.RefTap`: reference events from the records, selected by
    ``reftap.enable`` instead of the host's ``ref.event``), ``dac``
    (:class:`~combkey.gateware.spi.SPIDAC`, fed by the phase compensator's actuator: the fibre
    stretcher) and ``adc`` (:class:`~combkey.gateware.spi.SPIADC`); members ``dac`` / ``adc``
    (:func:`converter_members`).

    Extra members: ``tdc`` with ``in: In(N)`` (flat ``tdc__in``: detector pulses into the ECP5
    carry chains; in simulation the chain is an adder that the hit crosses in one cycle, so a
    pulse gives the full code), and ``link_records: Out(stream.Signature(64))``, the record
    stream (:class:`~combkey.gateware.timing.classifier.RecordWord`) for an Ethernet link
    (``link_*`` members belong to the link; with a UART link ``ready`` stays low and records
    are read through ``cls.records``).
    """

    kind = "relay"
    PARAM_FIELDS = (("channels", 0, 8),)

    def __init__(self, *, clk_hz=100_000_000, timeout_cycles=None, channels=2, lines=1,
                 taps=16, bins=64, tag_depth=64, record_depth=64, ethernet=False,
                 ethernet_params=None):
        check_tdc_params(channels, lines, taps)
        self.shape = dict(channels=channels, lines=lines, taps=taps, bins=bins,
                          tag_depth=tag_depth, record_depth=record_depth)
        self.map_params = dict(channels=channels)
        super().__init__(clk_hz=clk_hz, timeout_cycles=timeout_cycles, ethernet=ethernet,
                         ethernet_params=ethernet_params)

    @staticmethod
    def check_map_params(*, channels):
        """Raise ``ValueError`` naming the parameter when ``channels`` is invalid."""
        check_tdc_params(channels, 1, 2)

    def blocks(self):
        s = self.shape
        self.timing = TimingBlocks(s["channels"], s["lines"], s["taps"], s["bins"],
                                   tag_depth=s["tag_depth"], record_depth=s["record_depth"])
        self.phase = PhaseCompensator(count_width=10)
        self.ref = RelayIO(count_width=10)
        self.reftap = RefTap()
        self.dacdrv, self.adcdrv = SPIDAC(), SPIADC()
        return self.timing.blocks() + [("phase", self.phase), ("ref", self.ref),
                                       ("reftap", self.reftap), ("dac", self.dacdrv),
                                       ("adc", self.adcdrv)]

    def extra_members(self):
        return {"tdc": Out(wiring.Signature({"in": In(self.shape["channels"])})),
                "link_records": Out(stream.Signature(64)), **converter_members()}

    def placed_blocks(self):
        return TimingBlocks.PREFIXES

    def register_view(self, prefix, block):
        return _HideMembers(block, ("records_rd",)) if prefix == "cls" else block

    def elaborate_blocks(self, m, platform, bank):
        t = self.timing
        t.connect(m, pulse=getattr(self.tdc, "in"))
        ref, tap = self.ref, self.reftap
        # Reference events: from the records (``reftap.enable``) or pushed by the host.
        use_tap = tap.enable
        m.d.comb += [self.phase.i.valid.eq(Mux(use_tap, tap.ev.valid, ref.ev.valid)),
                     self.phase.i.payload.eq(Mux(use_tap, tap.ev.payload, ref.ev.payload)),
                     tap.ev.ready.eq(use_tap & self.phase.i.ready),
                     ref.ev.ready.eq(~use_tap & self.phase.i.ready),
                     tap.rec.eq(t.cls.records), tap.rec_valid.eq(ref.pop & t.cls.records[0])]
        wiring.connect(m, self.phase.est, ref.est_in)
        connect_converters(m, self, self.phase.o)        # phase actuator -> SPI DAC
        m.d.comb += [ref.head.eq(t.cls.records),
                     ref.head_rd.eq(bank.reg("cls.records").r_stb),
                     t.cls.records_rd.eq(ref.pop)]
        wiring.connect(m, ref.records, wiring.flipped(self.link_records))


def converter_members():
    """Members of the slow-loop converters every node drives: ``dac`` (flat ``dac__cs_n``,
    ``dac__copi``, ``dac__sclk``, ``dac__ldac_n``) and ``adc`` (``adc__cs_n``, ``adc__sclk``,
    ``adc__cipo[2]``), on the SPI Pmods of the board pin plans."""
    return {"dac": Out(wiring.Signature({"cs_n": Out(1), "copi": Out(1), "sclk": Out(1),
                                         "ldac_n": Out(1)})),
            "adc": Out(wiring.Signature({"cs_n": Out(1), "sclk": Out(1), "cipo": In(2)}))}


def connect_converters(m, node, actuator):
    """Drive ``node.dac`` from ``actuator`` (a loop's ``o`` stream) through ``node.dacdrv`` and
    read ``node.adc`` through ``node.adcdrv``."""
    wiring.connect(m, actuator, node.dacdrv.i)
    d, a = node.dacdrv.pins, node.adcdrv.pins
    m.d.comb += [node.dac.cs_n.eq(d.cs_n), node.dac.copi.eq(d.copi), node.dac.sclk.eq(d.sclk),
                 node.dac.ldac_n.eq(d.ldac_n), node.adc.cs_n.eq(a.cs_n),
                 node.adc.sclk.eq(a.sclk), a.cipo.eq(node.adc.cipo)]


def node_regmap(kind, **params):
    """Return the :class:`RegisterMap` of a ``kind`` node built with ``params``.

    The node is elaborated once (without a platform) so that Amaranth does not warn about a
    component created only to read its map.
    """
    from amaranth.hdl import Fragment

    node = node_class(kind)(**params)
    Fragment.get(node, None)
    return node.regmap


def node_regmap_from_params(kind, word):
    """Return the map of a ``kind`` node whose ``params`` identity register reads ``word``."""
    cls = node_class(kind)
    params = {name: (word >> offset) & ((1 << width) - 1)
              for name, offset, width in cls.PARAM_FIELDS}
    _, offset, width = ETHERNET_FIELD
    ethernet = bool((word >> offset) & ((1 << width) - 1))
    try:
        cls.check_map_params(**params)      # before any elaboratable exists
    except ValueError as exc:
        raise ValueError(f"params register 0x{word:08x} of a {kind} node does not describe a "
                         f"node this host can build: {exc}") from None
    return node_regmap(kind, ethernet=ethernet, **params)


def node_class(kind):
    """Return the node top class for ``kind`` (``transmitter`` or ``relay``)."""
    classes = {"transmitter": TransmitterNode, "relay": RelayNode}
    if kind not in classes:
        raise ValueError(f"node must be one of {sorted(classes)}, not {kind!r}")
    return classes[kind]
