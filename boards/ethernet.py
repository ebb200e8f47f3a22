"""Ethernet on a board: the node's register bridge over UART *and* UDP, and the record stream.

A board whose :class:`~combkey.boards.base.Board` has an ``ethernet`` PHY (an :class:`RGMIIPhy`,
or a plain ``(name, number)`` resource for the ECPIX-5's RTL8211, see "PHYs" below) gets, for
every node kind in :attr:`RGMIIPhy.nodes`, around the usual node top:

* the node built with ``ethernet=True`` (:class:`~combkey.gateware.node.Node`): one more
  register block, ``net`` (:class:`~combkey.gateware.net.core.EthernetCore`, see
  ``docs/ethernet.md``), last in the map, and ``params`` bit 31 set, so the host rebuilds the
  same map;
* :class:`LinkMux` between the bridge and its two clients, the UART (``UARTLink``) and the UDP
  register port of the core;
* the node's ``link_records`` stream (relay) into ``core.records`` and the tagger's lost-hit
  counts (sum of ``tagger.lost_<c>``) into ``core.upstream_dropped``;
* :class:`~combkey.gateware.net.core.RGMIIPins` on the PHY's pins, with the RGMII clock delays
  that PHY leaves to the FPGA (:attr:`RGMIIPhy.tx_delay_ps` on TXC, :attr:`RGMIIPhy.rx_delay_ps`
  on RXD/RX_CTL, DELAYG; 0 = none), holding the PHY in reset (when the resource has a ``rst``
  pin) for :attr:`RGMIIPhy.reset_s` after configuration (:func:`phy_reset_cycles` ``sync``
  cycles, see "PHY reset" below);
* the mux's counters into the node's ``link_mux_*`` members, so the host reads them as the
  registers ``link.mux_timeouts``, ``link.mux_skipped`` and ``link.mux_answered``
  (:data:`~combkey.gateware.node.LINK_MUX_REGS`; only a node built with ``ethernet=True`` has
  them, so a node without Ethernet keeps its map).

The stack and the MAC run in the ``eth`` domain at 125 MHz (1000BASE-T byte clock), a PLL output
of its own (:class:`~combkey.boards.base.NodeOnBoard`); everything the node sees (byte streams,
records, ``net.*`` registers) crosses into ``sync`` inside the core (AsyncFIFOs and a toggle
handshake, see :mod:`combkey.gateware.net.core`), so ``sync`` can run at any frequency.

Sharing the bridge: :class:`LinkMux`
------------------------------------
One bridge, one register bank; the two links take turns **by whole request frames**:

Members: ``a``/``b`` (``In(stream.Signature(8))``) request bytes from client A (UART) and B (UDP);
``a_rsp``/``b_rsp`` (``Out``) their response bytes; ``o`` (``Out``) bytes into the bridge;
``o_rsp`` (``In``) bytes from the bridge; counters (``Out(32)``, wrapping): ``timeouts`` (turns
ended by the idle timeout), ``skipped`` (a turn's first byte was not the start byte 0xC5: the
byte is dropped), ``answered`` (retried writes the mux answered itself, see below).

* Idle: the first client with a byte waiting gets the bridge; when both are waiting the one not
  served last wins (round robin, so neither can starve the other).
* A turn first takes the frame's first three bytes (``0xC5 seq cmd``) from the client into the
  mux, then decides (below), sends them to the bridge and forwards the rest of the request frame
  (its length from the header ``0xC5 seq cmd addr16 count``: ``8 + 4*count`` bytes for a WRITE,
  8 otherwise), then routes the bridge's response (``6 + 4*count`` bytes, from its own header)
  back to that client.
* A turn also ends after ``timeout_cycles`` cycles without a byte moving (a truncated request or
  a request the bridge drops without answer, e.g. a bad CRC). ``timeout_cycles`` must exceed the
  bridge's own idle timeout so that the bridge has dropped a truncated frame before the other
  client's bytes arrive (the board uses twice it).
* The bridge takes a WRITE whose ``seq`` equals that of the write just before it, with no valid
  frame in between, for a retry (answered with the duplicate flag, not applied). Two clients
  break both halves of that rule, so the mux tracks them per client:

  - when the turn goes to a different client than the previous frame's, the mux first sends the
    bridge a READ of address 0 (``magic``) and discards its response, so that client B's write
    is never taken for a retry of client A's write with the same ``seq``;
  - the mux remembers, per client, the ``seq`` of its last frame if that frame was a WRITE the
    bridge applied (status OK, duplicate or not). When that client's next frame is a WRITE with
    the same ``seq`` and another client's frame went to the bridge in between, it is a retry
    the bridge can no longer recognise: the mux takes the frame from the client without passing
    it on and answers it itself with the bridge's duplicate response (``0x5C seq 0x80 0x00``
    and its CRC-16; :func:`duplicate_response`). A retry of a write that failed (bad address,
    count or command) is forwarded and fails again. The retried frame's CRC is not checked
    (only its ``seq`` and ``cmd`` are read); a corrupted retry is answered as the write was.

Latency: one cycle per byte through the mux (combinational) plus three cycles for the first
three bytes of each request; 8 request + 10 response bytes of the injected read when the client
changes. Model: :class:`LinkMuxModel` (cycle by cycle).

Why not a second bridge: the bank and the bridge are built inside ``Node.elaborate``; a second
bridge on the same bank needs a bus arbiter there (a change to ``gateware/node.py``).

PHYs
----
:class:`RGMIIPhy` describes what differs between boards; :func:`board_phy` returns it for a
:class:`~combkey.boards.base.Board` (a plain ``(name, number)`` tuple means :data:`RTL8211`'s
parameters on that resource):

=====================  ==================  ========  ========  =====  =========================
board                  PHY (resource)      TXC (ps)  RXD (ps)  reset  nodes with Ethernet
=====================  ==================  ========  ========  =====  =========================
ecpix5-85              RTL8211 (0)         2000      0         C13    transmitter, relay
colorlight-5a75b       B50612D (0)         0         2000      P5     none (do not fit the 25F)
versa-ecp5-5g          88E1512 (0)         0         0         U17    transmitter, relay
=====================  ==================  ========  ========  =====  =========================

The delays are those each PHY leaves to the FPGA. A delay of 0 inserts no DELAYG. RGMII-ID
(RGMII v2.0) PHYs delay a clock themselves by about 2 ns when strapped or configured so; the
gateware makes no MDIO access, so the strapped default is what counts:

* RTL8211 (ECPIX-5): delays RXC itself, not TXC (see ``docs/ethernet.md``).
* Broadcom B50612D (Colorlight 5A-75B): no public datasheet. LiteX-Boards' target
  *colorlight_5a_75x.py* (litex-hub/litex-boards) drives it with ``tx_delay=0`` and LiteEth's
  default RX delay of 2 ns on the data (*liteeth/phy/ecp5rgmii.py*, ``rx_delay=2e-9``): the PHY
  delays TXC by default, not RXC. The same PHY family on the Colorlight i5 needs an MDIO write
  to *disable* its TX data-to-clock delay (litex-boards pull request #157, "Add colorlight i5
  board support"), which confirms that the TX delay is on after reset.
* Marvell 88E1512 (Versa ECP5-5G; amaranth-boards does not name the part): LiteX-Boards'
  target *lattice_versa_ecp5.py* drives it with ``tx_delay=0, rx_delay=0``: the PHY delays
  both clocks as the board configures it. The Marvell datasheet (register 21, page 2, RGMII
  timing control) was not at hand.

These are public-code provenance, not datasheets; a board on the bench (ping and the record
stream at line rate) is the proof.

PHY reset
---------
The ECPIX-5 carries a Realtek RTL8211 gigabit PHY (amaranth-boards' ``ECPIX5*Platform``
resource ``eth_rgmii`` 0, whose ``rst`` is PHYRSTB, active low, ball C13; amaranth-boards does
not name the part). Realtek's *RTL8211E(G)-VB(VL)-CG Integrated 10/100/1000M Ethernet
Transceiver* datasheet, hardware reset timing, asks for PHYRSTB held low for at least 10 ms
(:data:`PHY_RESET_S`) and for at least 30 ms after its release before the first MDC/MDIO access
(:data:`PHY_RESET_WAIT_S`). (Checked here only through code quoting the datasheet's 10 ms / 30 ms
for RTL8211 parts; the PDF itself and the board's exact RTL8211 variant were not at hand.) The
front holds reset for ``ceil(PHY_RESET_S * clk_hz)`` cycles of ``sync`` (the node's clock;
500,000 at the ECPIX-5's 50 MHz, where the earlier 125,000 cycles were 2.5 ms, a quarter of the
minimum).
The gateware makes no MDIO access (MDC low, MDIO released: the PHY runs on its strapped
defaults) and the stack transmits only in answer to a received frame, which the PHY cannot
deliver before its link is up (auto-negotiation takes far longer than the 30 ms), so nothing
needs to wait for :data:`PHY_RESET_WAIT_S`; a future MDIO master must.

The other boards' PHYs are held in reset for the same :data:`PHY_RESET_S` (10 ms): the
B50612D's and 88E1512's reset timing was not checked against their datasheets (not at hand).
On the Colorlight both PHYs share one reset net (P5), so using PHY 0 resets PHY 1 too. A PHY
resource without a ``rst`` pin gets no reset pulse (the PHY then leaves reset on its own
power-on reset; :attr:`RGMIIPhy.has_reset` says which, and the board notes say so).
amaranth-boards names the control pins ``tx_ctrl``/``rx_ctrl`` on some boards and
``tx_ctl``/``rx_ctl`` on others; :class:`EthernetFront` accepts both.

Host
----
``params`` bit 31 = 1 marks a node with the ``net`` block; ``node_regmap_from_params`` rebuilds
its map with ``ethernet=True``, so ``Device`` accepts such a node over any link.
"""
import functools
import math
import operator
from dataclasses import dataclass
from types import SimpleNamespace

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from combkey.gateware.bridge import (
    CMD_READ,
    CMD_WRITE,
    FLAG_DUPLICATE,
    SOF_REQUEST,
    SOF_RESPONSE,
    STATUS_OK,
    crc16,
    encode_request,
)
from combkey.gateware.node import LINK_MUX_REGS

__all__ = ["ETH_CLK_HZ", "ETH_DOMAIN", "CORE_PARAMS", "PHY_RESET_S", "PHY_RESET_WAIT_S",
           "phy_reset_cycles", "RGMIIPhy", "RTL8211", "RGMII_PINS", "board_phy", "rgmii_pins",
           "LinkMux", "LinkMuxModel", "SWITCH_REQUEST", "duplicate_response", "EthernetFront",
           "ethernet_factories"]

#: Frequency of the ``eth`` domain (1000BASE-T GMII byte clock), a PLL output of its own.
ETH_CLK_HZ = 125_000_000
#: Clock domain of the stack and the MAC on a board.
ETH_DOMAIN = "eth"
#: The READ of ``magic`` that the mux sends when the bridge changes client (see docstring).
SWITCH_REQUEST = encode_request(0, CMD_READ, 0, 1)
#: Core parameters for the ECPIX-5's RTL8211 (RXC delayed by the PHY, TXC by DELAYG), with the
#: stack and MAC in the ``eth`` domain (= ``RTL8211.core_params()``; other PHYs: :class:`RGMIIPhy`).
CORE_PARAMS = dict(domain=ETH_DOMAIN, tx_clk_mode="delay", tx_delay_ps=2000, rx_delay_ps=0)
#: Minimum time (s) PHYRSTB is held low: Realtek, "RTL8211E(G)-VB(VL)-CG Integrated
#: 10/100/1000M Ethernet Transceiver" datasheet, hardware reset timing ("PHY reset" above).
PHY_RESET_S = 10e-3
#: Minimum time (s) from PHYRSTB's release to the first MDC/MDIO access (same datasheet); the
#: gateware makes no MDIO access (module docstring).
PHY_RESET_WAIT_S = 30e-3


def phy_reset_cycles(clk_hz, reset_s=PHY_RESET_S):
    """Cycles at ``clk_hz`` that hold the PHY in reset for at least ``reset_s`` seconds
    (default :data:`PHY_RESET_S`)."""
    if isinstance(clk_hz, bool) or not isinstance(clk_hz, (int, float)) or not clk_hz > 0:
        raise ValueError(f"clk_hz must be a positive number, not {clk_hz!r}")
    if isinstance(reset_s, bool) or not isinstance(reset_s, (int, float)) or not reset_s > 0:
        raise ValueError(f"reset_s must be a positive number of seconds, not {reset_s!r}")
    # round() first: 10e-3 * 50e6 is 500000.00000000006 in floating point.
    return math.ceil(round(reset_s * clk_hz, 6))


#: amaranth-boards spells the RGMII control pins either way; :class:`RGMIIPins` reads ``*_ctrl``.
_PIN_ALIASES = {"tx_ctl": "tx_ctrl", "rx_ctl": "rx_ctrl"}
#: Subsignals an ``eth_rgmii`` resource must have (after :data:`_PIN_ALIASES`).
RGMII_PINS = ("tx_clk", "tx_ctrl", "tx_data", "rx_clk", "rx_ctrl", "rx_data")


@dataclass(frozen=True)
class RGMIIPhy:
    """An RGMII PHY on a board: what :class:`EthernetFront` needs beyond the pins.

    Attributes
    ----------
    resource : tuple
        ``(name, number)`` of the amaranth-boards RGMII resource (``("eth_rgmii", 0)``).
    part : str
        The PHY part, for the documentation.
    tx_delay_ps, rx_delay_ps : int
        Delay the FPGA adds to TXC (DELAYG after its ODDRX1F) and to RXD/RX_CTL (DELAYG before
        the IDDRX1F), 0 to 3175 ps; 0 where the PHY delays that clock itself (module docstring).
    reset_s : float
        Time the PHY is held in reset after configuration (when the resource has ``rst``).
    nodes : tuple of str
        Node kinds built with Ethernet on this board; the others keep the plain UART top (a
        node that does not fit the device with the stack, see the board file).
    """

    resource: tuple
    part: str
    tx_delay_ps: int
    rx_delay_ps: int
    reset_s: float = PHY_RESET_S
    nodes: tuple = ("transmitter", "relay")

    def __post_init__(self):
        from combkey.gateware.net.ddr import delay_taps

        from .nodes import NODE_KINDS

        res = self.resource
        if not (isinstance(res, tuple) and len(res) == 2 and isinstance(res[0], str)
                and isinstance(res[1], int) and not isinstance(res[1], bool)):
            raise ValueError(f"resource must be a (name, number) tuple, not {res!r}")
        for name in ("tx_delay_ps", "rx_delay_ps"):
            value = getattr(self, name)
            try:
                delay_taps(value)
            except ValueError as err:
                raise ValueError(f"{name} of PHY {self.part}: {err}") from None
        phy_reset_cycles(1e6, self.reset_s)     # checks reset_s
        unknown = [n for n in self.nodes if n not in NODE_KINDS]
        if not isinstance(self.nodes, tuple) or unknown:
            raise ValueError(f"nodes must be a tuple of node kinds "
                             f"({', '.join(sorted(NODE_KINDS))}), not {self.nodes!r}")

    def core_params(self):
        """Keyword arguments of :class:`~combkey.gateware.net.core.EthernetCore` for this PHY:
        the stack in the ``eth`` domain, TXC from an ODDRX1F delayed by ``tx_delay_ps``."""
        return dict(domain=ETH_DOMAIN, tx_clk_mode="delay", tx_delay_ps=self.tx_delay_ps,
                    rx_delay_ps=self.rx_delay_ps)

    def has_reset(self, platform):
        """Whether the resource has a ``rst`` pin on ``platform`` (a PHY without one gets no
        reset pulse)."""
        res = platform.lookup(*self.resource)
        return "rst" in {sub.name for sub in res.ios}

    def balls(self, platform):
        """``{subsignal: [balls]}`` of the resource on ``platform`` (control pins under their
        ``*_ctrl`` names)."""
        res = platform.lookup(*self.resource)
        return {_PIN_ALIASES.get(sub.name, sub.name): list(sub.ios[0].names) for sub in res.ios}


#: The ECPIX-5's Realtek RTL8211 on ``eth_rgmii`` 0: RXC delayed by the PHY, TXC by DELAYG.
RTL8211 = RGMIIPhy(("eth_rgmii", 0), part="Realtek RTL8211", tx_delay_ps=2000, rx_delay_ps=0)


def board_phy(board):
    """The :class:`RGMIIPhy` of ``board``, or ``None`` when it has no Ethernet.

    ``board.ethernet`` is an :class:`RGMIIPhy` or a plain ``(name, number)`` resource, which
    takes :data:`RTL8211`'s parameters on that resource."""
    eth = board.ethernet
    if eth is None or isinstance(eth, RGMIIPhy):
        return eth
    return RGMIIPhy(tuple(eth), part=RTL8211.part, tx_delay_ps=RTL8211.tx_delay_ps,
                    rx_delay_ps=RTL8211.rx_delay_ps, reset_s=RTL8211.reset_s,
                    nodes=RTL8211.nodes)


def rgmii_pins(pins):
    """``pins`` (a requested RGMII resource) with ``tx_ctl``/``rx_ctl`` also reachable as
    ``tx_ctrl``/``rx_ctrl``, the names :class:`~combkey.gateware.net.core.RGMIIPins` reads.
    Raises ``ValueError`` naming a missing data or clock pin."""
    names = {n: getattr(pins, n) for n in dir(pins) if not n.startswith("_")}
    out = {_PIN_ALIASES.get(n, n): v for n, v in names.items()}
    missing = [n for n in RGMII_PINS if n not in out]
    if missing:
        raise ValueError(f"RGMII resource lacks {', '.join(missing)} (has "
                         f"{', '.join(sorted(names))})")
    return SimpleNamespace(**out)


def _req_need(cmd, count):
    return 8 + (4 * count if cmd == CMD_WRITE else 0)


def duplicate_response(seq):
    """The bridge's response to a retried WRITE with sequence number ``seq`` (6 bytes)."""
    body = bytes([seq, STATUS_OK | FLAG_DUPLICATE, 0])
    return bytes([SOF_RESPONSE]) + body + crc16(body).to_bytes(2, "little")


def _dup_crc_terms():
    """``(k0, [k_b])`` with ``crc(seq) = k0 ^ XOR of k_b over the set bits b of seq``.

    CRC-16 with a fixed initial value is affine in the message: for messages of equal length
    ``crc(x ^ y) = crc(x) ^ crc(y) ^ crc(0)``; only ``seq`` varies in :func:`duplicate_response`.
    """
    def crc_of(seq):
        return int.from_bytes(duplicate_response(seq)[4:], "little")
    k0 = crc_of(0)
    return k0, [crc_of(1 << b) ^ k0 for b in range(8)]


class LinkMux(wiring.Component):
    """Two byte-stream clients sharing one register bridge (see the module docstring)."""

    def __init__(self, *, timeout_cycles):
        if isinstance(timeout_cycles, bool) or not isinstance(timeout_cycles, int) or \
                timeout_cycles < 2:
            raise ValueError(f"timeout_cycles must be an integer >= 2, not {timeout_cycles!r}")
        self.timeout_cycles = timeout_cycles
        super().__init__({
            "a": In(stream.Signature(8)), "a_rsp": Out(stream.Signature(8)),
            "b": In(stream.Signature(8)), "b_rsp": Out(stream.Signature(8)),
            "o": Out(stream.Signature(8)), "o_rsp": In(stream.Signature(8)),
            "timeouts": Out(32), "skipped": Out(32), "answered": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        owner = Signal()            # client of the current turn (0 = a, 1 = b)
        last = Signal()             # client of the previous frame forwarded to the bridge
        prio = Signal()             # client preferred when both wait
        n = Signal(11)              # bytes moved in this phase
        need = Signal(11)
        head = [Signal(8, name=f"head{i}") for i in range(3)]   # start byte, seq, cmd
        status = Signal(8)
        wseq = [Signal(8, name=f"wseq_{c}") for c in "ab"]      # per client: last write's seq
        wok = [Signal(name=f"wok_{c}") for c in "ab"]           # ... and it was applied
        timer = Signal(range(self.timeout_cycles + 1))
        sw = list(SWITCH_REQUEST)
        k0, kb = _dup_crc_terms()
        seq, cmd = head[1], head[2]
        dup_crc = Signal(16)
        m.d.comb += dup_crc.eq(functools.reduce(
            operator.xor, (Mux(seq[b], kb[b], 0) for b in range(8)), Const(k0, 16)))

        src_valid = Mux(owner, self.b.valid, self.a.valid)
        src_data = Mux(owner, self.b.payload, self.a.payload)
        moved = Signal()
        m.d.comb += [self.a_rsp.payload.eq(self.o_rsp.payload),
                     self.b_rsp.payload.eq(self.o_rsp.payload)]

        def tick(m, moving):
            with m.If(moving):
                m.d.sync += timer.eq(0)
            with m.Elif(timer == self.timeout_cycles - 1):
                m.d.sync += [timer.eq(0), self.timeouts.eq(self.timeouts + 1),
                             prio.eq(~owner)]
                m.next = "IDLE"
            with m.Else():
                m.d.sync += timer.eq(timer + 1)

        def take_client(m):
            m.d.comb += [self.a.ready.eq(~owner), self.b.ready.eq(owner), moved.eq(src_valid)]

        with m.FSM():
            with m.State("IDLE"):
                pick = Mux(self.a.valid & self.b.valid, prio, self.b.valid)
                with m.If(self.a.valid | self.b.valid):
                    m.d.sync += [owner.eq(pick), n.eq(0), timer.eq(0)]
                    m.next = "HEAD"
            with m.State("HEAD"):
                take_client(m)
                with m.If(moved):
                    m.d.sync += n.eq(n + 1)
                    with m.Switch(n):
                        for i in range(3):
                            with m.Case(i):
                                m.d.sync += head[i].eq(src_data)
                    with m.If((n == 0) & (src_data != SOF_REQUEST)):
                        m.d.sync += [n.eq(0), prio.eq(~owner),
                                     self.skipped.eq(self.skipped + 1)]
                        m.next = "IDLE"
                    with m.If(n == 2):
                        retry = (src_data == CMD_WRITE) & (owner != last) & \
                            Mux(owner, wok[1], wok[0]) & (Mux(owner, wseq[1], wseq[0]) == seq)
                        with m.If(retry):
                            m.next = "DROP"
                        with m.Elif(owner != last):
                            m.d.sync += n.eq(0)
                            m.next = "SWITCH"
                        with m.Else():
                            m.d.sync += n.eq(0)
                            m.next = "REPLAY"
                tick(m, moved)
            with m.State("SWITCH"):
                m.d.comb += self.o.valid.eq(1)
                with m.Switch(n):
                    for i, byte in enumerate(sw):
                        with m.Case(i):
                            m.d.comb += self.o.payload.eq(byte)
                with m.If(self.o.ready):
                    m.d.sync += n.eq(n + 1)
                    with m.If(n == len(sw) - 1):
                        m.d.sync += [n.eq(0), need.eq(6)]
                        m.next = "SWITCH_RSP"
                tick(m, self.o.ready)
            with m.State("SWITCH_RSP"):
                m.d.comb += self.o_rsp.ready.eq(1)
                with m.If(self.o_rsp.valid):
                    m.d.sync += n.eq(n + 1)
                    with m.If(n == 3):
                        m.d.sync += need.eq(6 + 4 * self.o_rsp.payload)
                    with m.If((n >= 3) & (n + 1 == Mux(n == 3, 6 + 4 * self.o_rsp.payload,
                                                       need))):
                        m.d.sync += [n.eq(0), last.eq(owner), timer.eq(0)]
                        m.next = "REPLAY"
                tick(m, self.o_rsp.valid)
            with m.State("REPLAY"):
                m.d.comb += [self.o.valid.eq(1),
                             self.o.payload.eq(Mux(n == 0, head[0], Mux(n == 1, seq, cmd)))]
                with m.If(self.o.ready):
                    m.d.sync += [n.eq(n + 1), last.eq(owner)]
                    with m.If(n == 2):
                        m.next = "REQ"
                tick(m, self.o.ready)
            with m.State("REQ"):
                m.d.comb += [self.o.valid.eq(src_valid), self.o.payload.eq(src_data),
                             self.a.ready.eq(~owner & self.o.ready),
                             self.b.ready.eq(owner & self.o.ready),
                             moved.eq(src_valid & self.o.ready)]
                with m.If(moved):
                    m.d.sync += n.eq(n + 1)
                    with m.If(n == 5):
                        m.d.sync += need.eq(Mux(cmd == CMD_WRITE, 8 + 4 * src_data, 8))
                    with m.If((n >= 7) & (n + 1 == need)):
                        m.d.sync += [n.eq(0), need.eq(6)]
                        m.next = "RSP"
                tick(m, moved)
            with m.State("RSP"):
                rsp = Signal()
                m.d.comb += [self.a_rsp.valid.eq(self.o_rsp.valid & ~owner),
                             self.b_rsp.valid.eq(self.o_rsp.valid & owner),
                             self.o_rsp.ready.eq(Mux(owner, self.b_rsp.ready,
                                                     self.a_rsp.ready)),
                             rsp.eq(self.o_rsp.valid & self.o_rsp.ready)]
                with m.If(rsp):
                    m.d.sync += n.eq(n + 1)
                    with m.If(n == 2):
                        m.d.sync += status.eq(self.o_rsp.payload)
                    with m.If(n == 3):
                        m.d.sync += need.eq(6 + 4 * self.o_rsp.payload)
                    with m.If((n >= 3) & (n + 1 == Mux(n == 3, 6 + 4 * self.o_rsp.payload,
                                                       need))):
                        m.d.sync += [n.eq(0), prio.eq(~owner)]
                        applied = (cmd == CMD_WRITE) & (status[:7] == STATUS_OK)
                        for c in range(2):
                            with m.If(owner == c):
                                m.d.sync += [wok[c].eq(applied), wseq[c].eq(seq)]
                        m.next = "IDLE"
                # A response byte offered but not taken (the client is slow) is not idleness.
                tick(m, self.o_rsp.valid)
            with m.State("DROP"):
                take_client(m)
                with m.If(moved):
                    m.d.sync += n.eq(n + 1)
                    with m.If(n == 5):
                        m.d.sync += need.eq(8 + 4 * src_data)
                    with m.If((n >= 7) & (n + 1 == need)):
                        m.d.sync += n.eq(0)
                        m.next = "ANSWER"
                tick(m, moved)
            with m.State("ANSWER"):
                byte = Signal(8)
                with m.Switch(n):
                    for i, value in enumerate([SOF_RESPONSE, None, STATUS_OK | FLAG_DUPLICATE,
                                               0, None, None]):
                        with m.Case(i):
                            v = {1: seq, 4: dup_crc[:8], 5: dup_crc[8:]}.get(i, value)
                            m.d.comb += byte.eq(v)
                ready = Mux(owner, self.b_rsp.ready, self.a_rsp.ready)
                m.d.comb += [self.a_rsp.valid.eq(~owner), self.b_rsp.valid.eq(owner),
                             self.a_rsp.payload.eq(byte), self.b_rsp.payload.eq(byte)]
                with m.If(ready):
                    m.d.sync += n.eq(n + 1)
                    with m.If(n == 5):
                        m.d.sync += [n.eq(0), prio.eq(~owner),
                                     self.answered.eq(self.answered + 1)]
                        m.next = "IDLE"
        return m


class LinkMuxModel:
    """Cycle model of :class:`LinkMux`.

    :meth:`step` takes the inputs seen in one cycle (``a_valid``, ``a_data``, ``b_valid``,
    ``b_data``, ``o_ready``, ``o_rsp_valid``, ``o_rsp_data``, ``a_rsp_ready``, ``b_rsp_ready``)
    and returns the outputs of that cycle (``o_valid``, ``o_data``, ``a_ready``, ``b_ready``,
    ``a_rsp_valid``, ``b_rsp_valid``, ``rsp_data``, ``o_rsp_ready``, ``timeouts``, ``skipped``,
    ``answered``) before advancing the state. ``o_data`` is only meaningful when ``o_valid``,
    ``rsp_data`` (the payload of both response streams) when one of them is valid.
    """

    def __init__(self, *, timeout_cycles):
        self.timeout_cycles = timeout_cycles
        self.state = "IDLE"
        self.owner = self.last = self.prio = 0
        self.n = self.need = self.timer = self.status = 0
        self.head = [0, 0, 0]
        self.wseq = [0, 0]
        self.wok = [0, 0]
        self.timeouts = self.skipped = self.answered = 0

    def _tick(self, moving):
        if moving:
            self.timer = 0
        elif self.timer == self.timeout_cycles - 1:
            self.timer = 0
            self.timeouts = (self.timeouts + 1) & 0xFFFF_FFFF
            self.prio = 1 - self.owner
            return "IDLE"
        else:
            self.timer += 1
        return None

    def step(self, i):
        out = dict(o_valid=0, o_data=0, a_ready=0, b_ready=0, a_rsp_valid=0, b_rsp_valid=0,
                   rsp_data=i["o_rsp_data"], o_rsp_ready=0, timeouts=self.timeouts,
                   skipped=self.skipped, answered=self.answered)
        st = self.state
        nxt = st
        own = self.owner
        valid = i["b_valid"] if own else i["a_valid"]
        data = i["b_data"] if own else i["a_data"]
        seq, cmd = self.head[1], self.head[2]
        if st == "IDLE":
            if i["a_valid"] or i["b_valid"]:
                pick = self.prio if (i["a_valid"] and i["b_valid"]) else int(bool(i["b_valid"]))
                self.owner, self.n, self.timer = pick, 0, 0
                nxt = "HEAD"
        elif st in ("HEAD", "DROP"):
            out["a_ready"], out["b_ready"] = int(not own), int(own)
            if valid:
                n = self.n
                self.n += 1
                if st == "HEAD":
                    if n < 3:
                        self.head[n] = data
                    if n == 0 and data != SOF_REQUEST:
                        self.n, self.prio = 0, 1 - own
                        self.skipped = (self.skipped + 1) & 0xFFFF_FFFF
                        nxt = "IDLE"
                    if n == 2:
                        retry = (data == CMD_WRITE and own != self.last and self.wok[own]
                                 and self.wseq[own] == self.head[1])
                        if retry:
                            nxt = "DROP"
                        else:
                            self.n = 0
                            nxt = "SWITCH" if own != self.last else "REPLAY"
                else:
                    if n == 5:
                        self.need = 8 + 4 * data
                    if n >= 7 and n + 1 == self.need:
                        self.n = 0
                        nxt = "ANSWER"
            nxt = self._tick(valid) or nxt
        elif st == "SWITCH":
            out["o_valid"], out["o_data"] = 1, SWITCH_REQUEST[self.n]
            if i["o_ready"]:
                self.n += 1
                if self.n == len(SWITCH_REQUEST):
                    self.n, self.need = 0, 6
                    nxt = "SWITCH_RSP"
            nxt = self._tick(i["o_ready"]) or nxt
        elif st == "SWITCH_RSP":
            out["o_rsp_ready"] = 1
            if i["o_rsp_valid"]:
                n = self.n
                self.n += 1
                need = 6 + 4 * i["o_rsp_data"] if n == 3 else self.need
                self.need = need
                if n >= 3 and n + 1 == need:
                    self.n, self.last, self.timer = 0, own, 0
                    nxt = "REPLAY"
            nxt = self._tick(i["o_rsp_valid"]) or nxt
        elif st == "REPLAY":
            out["o_valid"], out["o_data"] = 1, self.head[min(self.n, 2)]
            if i["o_ready"]:
                n = self.n
                self.n += 1
                self.last = own
                if n == 2:
                    nxt = "REQ"
            nxt = self._tick(i["o_ready"]) or nxt
        elif st == "REQ":
            out["o_valid"], out["o_data"] = valid, data
            out["a_ready"] = int(not own and i["o_ready"])
            out["b_ready"] = int(own and i["o_ready"])
            moved = valid and i["o_ready"]
            if moved:
                n = self.n
                self.n += 1
                if n == 5:
                    self.need = _req_need(cmd, data)
                if n >= 7 and n + 1 == self.need:
                    self.n, self.need = 0, 6
                    nxt = "RSP"
            nxt = self._tick(moved) or nxt
        elif st == "RSP":
            out["a_rsp_valid"] = int(i["o_rsp_valid"] and not own)
            out["b_rsp_valid"] = int(i["o_rsp_valid"] and own)
            out["o_rsp_ready"] = i["b_rsp_ready"] if own else i["a_rsp_ready"]
            if i["o_rsp_valid"] and out["o_rsp_ready"]:
                n = self.n
                self.n += 1
                if n == 2:
                    self.status = i["o_rsp_data"]
                need = 6 + 4 * i["o_rsp_data"] if n == 3 else self.need
                self.need = need
                if n >= 3 and n + 1 == need:
                    self.n, self.prio = 0, 1 - own
                    self.wok[own] = int(cmd == CMD_WRITE and self.status & 0x7F == STATUS_OK)
                    self.wseq[own] = seq
                    nxt = "IDLE"
            nxt = self._tick(i["o_rsp_valid"]) or nxt
        elif st == "ANSWER":
            out["a_rsp_valid"], out["b_rsp_valid"] = int(not own), int(own)
            out["rsp_data"] = duplicate_response(seq)[self.n]
            if i["b_rsp_ready"] if own else i["a_rsp_ready"]:
                self.n += 1
                if self.n == 6:
                    self.n, self.prio = 0, 1 - own
                    self.answered = (self.answered + 1) & 0xFFFF_FFFF
                    nxt = "IDLE"
        self.state = nxt
        return out


class EthernetFront(wiring.Component):
    """What ``UARTLink`` sees as "the node" on an Ethernet board: the node, the mux, the pins.

    Members ``rx``/``tx`` (the UART's byte streams, client A of :class:`LinkMux`) and
    ``link_framing_errors``/``link_overruns`` (passed to the node). The node's ``net`` core is
    client B (:meth:`connect_client_b`); the mux's counters drive the node's ``link_mux_*``
    members. The RGMII pins come from ``platform.request(*resource, dir="-")`` (skipped when
    ``platform`` is ``None``, e.g. in simulation; ``tx_ctl``/``rx_ctl`` are taken for
    ``tx_ctrl``/``rx_ctrl``, :func:`rgmii_pins`); the PHY is held in reset for
    :attr:`phy_reset_cycles` ``sync`` cycles (:func:`phy_reset_cycles` of the node's clock and
    ``reset_s``) when the resource has a ``rst`` pin.
    """

    def __init__(self, node, *, resource=("eth_rgmii", 0), reset_s=PHY_RESET_S):
        if not getattr(node, "ethernet", False):
            raise TypeError(f"node must be built with ethernet=True, not {node!r}")
        self.node = node
        self.clk_hz = node.clk_hz
        self.resource = tuple(resource)
        self.mux = LinkMux(timeout_cycles=2 * node.timeout_cycles)
        self.phy_reset_cycles = phy_reset_cycles(node.clk_hz, reset_s)
        self.eth_pins = None        # the RGMIIPins of the last elaboration with a platform
        super().__init__({"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
                          "link_framing_errors": In(16), "link_overruns": In(16)})

    def elaborate(self, platform):
        from combkey.gateware.net.core import RGMIIPins

        m = Module()
        node, core = self.node, self.node.net
        m.submodules.node = node
        m.submodules.mux = mux = self.mux
        wiring.connect(m, wiring.flipped(self.rx), mux.a)
        wiring.connect(m, mux.a_rsp, wiring.flipped(self.tx))
        self.connect_client_b(m, mux)
        wiring.connect(m, mux.o, node.rx)
        wiring.connect(m, node.tx, mux.o_rsp)
        m.d.comb += [node.link_framing_errors.eq(self.link_framing_errors),
                     node.link_overruns.eq(self.link_overruns)]
        for reg in LINK_MUX_REGS:
            m.d.comb += getattr(node, f"link_{reg.name}").eq(
                getattr(mux, reg.name.removeprefix("mux_")))
        if "link_records" in node.signature.members:
            wiring.connect(m, node.link_records, core.records)
            tagger = node.timing.tagger
            lost = [getattr(tagger, f"lost_{c}") for c in range(node.shape["channels"])]
            total = Signal(32)
            m.d.sync += total.eq(sum(lost[1:], lost[0])[:32])
            m.d.comb += core.upstream_dropped.eq(total)
        if platform is not None:
            pins = rgmii_pins(platform.request(*self.resource, dir="-"))
            self.eth_pins = RGMIIPins(pins, core, reset_cycles=self.phy_reset_cycles)
            m.submodules.eth_pins = self.eth_pins
            platform.add_clock_constraint(pins.rx_clk.io, ETH_CLK_HZ)     # the PHY's RXC
        return m


    def connect_client_b(self, m, mux):
        """Connect client B of ``mux``: the UDP register port of the node's ``net`` core (a
        test may override this to drive client B without Ethernet frames)."""
        core = self.node.net
        wiring.connect(m, core.reg_rx, mux.b)
        wiring.connect(m, mux.b_rsp, core.reg_tx)


def ethernet_factories(board, node_factory, link_factory):
    """Wrap a board's ``(node_factory, link_factory)`` for its Ethernet PHY.

    ``node_factory`` is ``functools.partial(NodeClass, **params)`` (as
    :func:`~combkey.boards.nodes.node_factories` returns); the result is the same node class
    with the same parameters plus ``ethernet=True, ethernet_params=phy.core_params()`` (the
    stack in the ``eth`` domain, the PHY's RGMII delays, :func:`board_phy`), and the link
    factory builds ``link_factory(EthernetFront(node, ...), ...)``. A node kind not in the
    PHY's :attr:`~RGMIIPhy.nodes` and other tops (the pin-plan probe) are returned unchanged,
    without Ethernet.
    """
    phy = board_phy(board)
    if phy is None or not isinstance(node_factory, functools.partial) or \
            not hasattr(node_factory.func, "PARAM_FIELDS"):
        return node_factory, link_factory       # not a node top (e.g. the pin-plan probe)
    if getattr(node_factory.func, "kind", None) not in phy.nodes:
        return node_factory, link_factory       # the board keeps this node without Ethernet
    eth_factory = functools.partial(node_factory, ethernet=True,
                                    ethernet_params=phy.core_params())

    def eth_link(node, **kw):
        return link_factory(EthernetFront(node, resource=phy.resource, reset_s=phy.reset_s),
                            **kw)

    return eth_factory, eth_link
