"""The host's view of a node: :class:`Device` over an interchangeable :class:`Link`.

URLs
----
* ``sim://transmitter``, ``sim://relay``: the node's gateware running in the Amaranth simulator
  in this process, driven at byte level on the bridge's streams (the UART itself is verified
  separately). Query options: ``clk_hz`` (default 100 MHz), ``ethernet`` (0 or 1, default 0;
  1 builds the node with its ``net`` block, as on a board with an Ethernet PHY).
* ``serial:///dev/ttyUSB0?baud=115200``: a board's UART through pyserial.
* ``udp://ADDR[:PORT]``: a board's Ethernet port (registered by :mod:`combkey.udp`).

Every link gives the same :class:`Device`: ``read(name)``, ``write(name, value)``,
``read_burst(name_or_addr, count)``, ``dump()``. The device checks the node's ``magic`` and
``map_hash`` before anything else, so a host never talks to a node whose map it does not share.

Links
-----
A :class:`Link` moves one request frame and returns the raw response frame
(:meth:`Link.exchange`), or ``None`` on timeout. :class:`Device` does the framing, the sequence
numbers and the retries: a request whose response is lost or corrupted is sent again with the
same sequence number, and the bridge does not apply a retried write twice.
"""
import abc
import collections
import difflib
import time
import urllib.parse

from .gateware import bridge as br
from .gateware.node import (
    IDENTITY_REGS,
    MAGIC,
    NODE_KINDS,
    PARAMS_ADDR,
    node_class,
    node_regmap_from_params,
)
from .gateware.regs import Access

__all__ = ["DeviceError", "LinkTimeout", "Link", "SimLink", "SerialLink", "open_link",
           "register_scheme", "Device", "bench_link"]


class DeviceError(RuntimeError):
    """A device-level failure with a message meant for the user."""


class LinkTimeout(DeviceError):
    """No valid response after all retries."""


class Link(abc.ABC):
    """One request frame in, one response frame out."""

    url = ""

    @abc.abstractmethod
    def exchange(self, request, timeout):
        """Send ``request`` (bytes); return the response frame bytes, or ``None`` on timeout."""

    closed = False

    def close(self):
        """Release the link's resources; subclasses with resources extend this."""
        self.closed = True


def _read_frame(read_byte):
    """Read one response frame with ``read_byte() -> int | None``; skip bytes before the start.

    Returns ``None`` when ``read_byte`` runs dry.
    """
    while True:
        b = read_byte()
        if b is None:
            return None
        if b == br.SOF_RESPONSE:
            break
    frame = bytearray([b])
    while len(frame) < 4 or len(frame) < br.response_length(frame):
        b = read_byte()
        if b is None:
            return None
        frame.append(b)
    return bytes(frame)


class SimLink(Link):
    """A node top running in the Amaranth simulator, driven at byte level.

    Parameters
    ----------
    kind : str
        ``transmitter`` or ``relay``.
    clk_hz : int
        Simulated system clock (sets the ``clk_hz`` register and the bridge timeout).
    node : Node or None
        A prebuilt node top (for tests that configure the node's parameters).
    ethernet : bool
        Build the node with its ``net`` block (``ethernet=True``; ignored with ``node``).
    testbenches : iterable of ``async def tb(ctx)``
        Extra background testbenches run beside the link (test-only stimulus on the node's
        other ports, e.g. detector pulses or ADC words); they advance whenever the link does
        (:meth:`step`, :meth:`exchange`).
    """

    def __init__(self, kind="transmitter", *, clk_hz=100_000_000, node=None, testbenches=(),
                 ethernet=False):
        from .gateware.stream import SIM_CLOCK_HZ, make_simulator

        self.url = f"sim://{kind}"
        self.node = node if node is not None else \
            node_class(kind)(clk_hz=clk_hz, ethernet=ethernet)
        self.cycles = 0
        self._inq = collections.deque()
        self._outq = collections.deque()
        self.sim = make_simulator(self.node)
        # Further clock domains a node asks for (a transmitter's ``fast`` modulator domain) run
        # at their frequency relative to the system clock: ``<domain>_clk_hz`` / ``clk_hz``.
        for domain in getattr(self.node, "required_domains", ()):
            ratio = getattr(self.node, f"{domain}_clk_hz") / self.node.clk_hz
            self.sim.add_clock(1 / (SIM_CLOCK_HZ * ratio), domain=domain)
        self.sim.add_testbench(self._pump, background=True)
        for tb in testbenches:
            self.sim.add_testbench(tb, background=True)

    async def _pump(self, ctx):
        rx, tx = self.node.rx, self.node.tx
        ctx.set(tx.ready, 1)
        while True:
            if self._inq:
                ctx.set(rx.payload, self._inq[0])
                ctx.set(rx.valid, 1)
            else:
                ctx.set(rx.valid, 0)
            _, _, rx_valid, rx_ready, tx_valid, tx_payload = await ctx.tick().sample(
                rx.valid, rx.ready, tx.valid, tx.payload)
            self.cycles += 1
            if rx_valid and rx_ready:
                self._inq.popleft()
            if tx_valid:
                self._outq.append(tx_payload)

    def step(self, cycles):
        """Advance the simulation by ``cycles`` clock cycles."""
        target = self.cycles + cycles
        while self.cycles < target:
            self.sim.advance()

    def exchange(self, request, timeout, max_cycles=100_000):
        self._inq.extend(request)

        def read_byte():
            start = self.cycles
            while not self._outq:
                if self.cycles - start > max_cycles:
                    return None
                self.sim.advance()
            return self._outq.popleft()
        return _read_frame(read_byte)


class SerialLink(Link):
    """A board's UART through pyserial: ``serial:///dev/ttyUSB0?baud=115200``."""

    def __init__(self, port, *, baud=115200):
        import serial

        self.url = f"serial://{port}?baud={baud}"
        try:
            self.port = serial.Serial(port, baudrate=baud, timeout=0.05)
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"cannot open serial port {port!r}: {exc}. Is the board plugged "
                              f"in, and is the port right (ls /dev/ttyUSB* /dev/ttyACM*)?") \
                from exc

    def exchange(self, request, timeout):
        self.port.reset_input_buffer()
        self.port.write(request)
        deadline = time.monotonic() + timeout

        def read_byte():
            while time.monotonic() < deadline:
                b = self.port.read(1)
                if b:
                    return b[0]
            return None
        return _read_frame(read_byte)

    def close(self):
        self.port.close()


def _open_sim(parsed, query):
    kind = parsed.netloc or parsed.path.lstrip("/")
    if kind not in NODE_KINDS:
        raise DeviceError(f"sim URL must name a node kind {sorted(NODE_KINDS)}, "
                          f"as in sim://transmitter, not {parsed.geturl()!r}")
    clk = _int_option(query, "clk_hz", 100_000_000)
    ethernet = _int_option(query, "ethernet", 0)
    if ethernet not in (0, 1):
        raise DeviceError(f"URL option ethernet must be 0 or 1, not {ethernet!r}")
    return SimLink(kind, clk_hz=clk, ethernet=bool(ethernet))


def _open_serial(parsed, query):
    port = parsed.path or parsed.netloc
    if not port:
        raise DeviceError(f"serial URL must name a port, as in serial:///dev/ttyUSB0, "
                          f"not {parsed.geturl()!r}")
    return SerialLink(port, baud=_int_option(query, "baud", 115200))


def _int_option(query, name, default):
    if name not in query:
        return default
    try:
        return int(query[name][-1])
    except ValueError:
        raise DeviceError(f"URL option {name} must be an integer, not {query[name][-1]!r}") \
            from None


_SCHEMES = {"sim": _open_sim, "serial": _open_serial}


def register_scheme(scheme, opener):
    """Register ``opener(parsed_url, query_dict) -> Link`` for URLs of ``scheme``."""
    _SCHEMES[scheme] = opener


def open_link(url):
    """Return the :class:`Link` for ``url`` (see the module docstring)."""
    if not isinstance(url, str) or "://" not in url:
        raise DeviceError(f"device URL must look like sim://transmitter, "
                          f"serial:///dev/ttyUSB0 or udp://10.0.0.2, not {url!r}")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "udp" and "udp" not in _SCHEMES:
        from . import udp  # noqa: F401  (registers the scheme)
    if parsed.scheme not in _SCHEMES:
        raise DeviceError(f"device URL scheme must be one of {sorted(_SCHEMES)}, "
                          f"not {parsed.scheme!r} (in {url!r})")
    return _SCHEMES[parsed.scheme](parsed, urllib.parse.parse_qs(parsed.query))


class Device:
    """A node reached through a :class:`Link`, addressed by register names.

    Parameters
    ----------
    link : Link
    regmap : RegisterMap or None
        The map to use; by default the map of the node kind the device reports.
    retries : int
        Extra attempts after a timeout or a corrupted response.
    timeout : float
        Seconds to wait for one response.

    Raises
    ------
    DeviceError
        When the node's magic is wrong or its map hash differs from the host's map.
    """

    def __init__(self, link, *, regmap=None, retries=3, timeout=0.5):
        self.link = link
        self.retries = retries
        self.timeout = timeout
        self._seq = 0
        self.stats = collections.Counter()
        ident = {reg.name: i for i, reg in enumerate(IDENTITY_REGS)}
        ident_words = self._transact(br.CMD_BURST_READ, 0, count=PARAMS_ADDR + 1)
        magic, map_hash, kind = ident_words[:3]
        if magic != MAGIC:
            raise DeviceError(f"{link.url}: not a combkey node (magic 0x{magic:08x}, expected "
                              f"0x{MAGIC:08x})")
        kinds = {v: k for k, v in NODE_KINDS.items()}
        if kind not in kinds:
            raise DeviceError(f"{link.url}: unknown node kind code {kind}")
        self.kind = kinds[kind]
        if regmap is None:
            node = getattr(link, "node", None)
            try:
                regmap = node.regmap if node is not None else \
                    node_regmap_from_params(self.kind, ident_words[PARAMS_ADDR])
            except ValueError as exc:
                raise DeviceError(f"{link.url}: {exc}") from None
        self.regmap = regmap
        if map_hash != regmap.map_hash():
            raise DeviceError(
                f"{link.url}: node {self.kind!r} has register map hash 0x{map_hash:08x} but this "
                f"host's map is 0x{regmap.map_hash():08x}; the gateware and host differ "
                f"(rebuild the bitstream or update the host)")
        assert ident["magic"] == 0 and ident["map_hash"] == 1 and ident["node_kind"] == 2
        assert regmap.address("params") == PARAMS_ADDR

    @classmethod
    def open(cls, url, **kwargs):
        """Open ``url`` (see :func:`open_link`) and return the :class:`Device`."""
        return cls(open_link(url), **kwargs)

    def close(self):
        self.link.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _transact(self, cmd, addr, count=1, data=()):
        self._seq = (self._seq + 1) & 0xFF
        request = br.encode_request(self._seq, cmd, addr, count, data)
        last = "no response"
        for _attempt in range(self.retries + 1):
            self.stats["requests"] += 1
            frame = self.link.exchange(request, self.timeout)
            if frame is None:
                self.stats["timeouts"] += 1
                last = f"no response within {self.timeout} s"
                continue
            try:
                rsp = br.decode_response(frame)
            except br.FrameError as exc:
                self.stats["bad_frames"] += 1
                last = str(exc)
                continue
            if rsp.seq != self._seq:
                self.stats["stale"] += 1
                last = f"response sequence {rsp.seq} for request {self._seq}"
                continue
            if not rsp.ok:
                code = rsp.status & 0x7F
                raise DeviceError(f"{self.link.url}: node answered "
                                  f"{br.STATUS_NAMES.get(code, hex(code))} to "
                                  f"cmd {cmd} at 0x{addr:04x} count {count}")
            return list(rsp.words)
        raise LinkTimeout(f"{self.link.url}: {last} after {self.retries + 1} attempts")

    def lookup(self, name):
        """Return the :class:`Reg` called ``name``; suggest close names when there is none."""
        if name in self.regmap:
            return self.regmap[name]
        names = [r.name for r in self.regmap]
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else \
            " (combkey regmap lists them)"
        raise DeviceError(f"no register named {name!r} on this {self.kind} node{hint}")

    def read_raw(self, name):
        reg = self.lookup(name)
        words = self._transact(br.CMD_BURST_READ if reg.words > 1 else br.CMD_READ,
                               self.regmap.address(name), count=reg.words)
        return sum(w << (32 * i) for i, w in enumerate(words))

    def read(self, name):
        """Read register ``name``; signed registers come back negative when they are."""
        reg = self.lookup(name)
        if reg.access is Access.W1P:
            raise DeviceError(f"register {name!r} is write-only (pulse)")
        return reg.decode(self.read_raw(name))

    def write(self, name, value):
        """Write ``value`` to register ``name``, checking that it fits."""
        reg = self.lookup(name)
        if reg.access is Access.R:
            raise DeviceError(f"register {name!r} is read-only")
        try:
            raw = reg.check_value(value)
        except (ValueError, TypeError) as exc:
            raise DeviceError(str(exc)) from None
        words = [(raw >> (32 * i)) & 0xFFFF_FFFF for i in range(reg.words)]
        self._transact(br.CMD_WRITE, self.regmap.address(name), count=len(words), data=words)

    def read_burst(self, start, count):
        """Read ``count`` raw words from ``start`` (a register name or a word address)."""
        addr = self.regmap.address(self.lookup(start).name) if isinstance(start, str) else start
        words = []
        while count > 0:
            n = min(count, br.MAX_BURST_WORDS)
            words += self._transact(br.CMD_BURST_READ, addr, count=n)
            addr += n
            count -= n
        return words

    def dump(self):
        """Return ``{name: value}`` of every readable register, read in bursts."""
        words = self.read_burst(0, self.regmap.size)
        out = {}
        for addr, reg in self.regmap.all_resources():
            if reg.access is Access.W1P:
                continue
            raw = sum(words[addr + i] << (32 * i) for i in range(reg.words))
            out[reg.name] = reg.decode(raw)
        return out


def bench_link(quick=False):
    """Simulated register round trip: scratch write + read through the bridge in pysim."""
    n = 20 if quick else 200
    link = SimLink("transmitter")
    dev = Device(link)
    c0 = link.cycles
    t0 = time.perf_counter()
    for i in range(n):
        dev.write("scratch", i * 2654435761 & 0xFFFF_FFFF)
        assert dev.read("scratch") == i * 2654435761 & 0xFFFF_FFFF
    wall = time.perf_counter() - t0
    cycles = (link.cycles - c0) / (2 * n)
    t1 = time.perf_counter()
    dump = dev.dump()
    dump_wall = time.perf_counter() - t1
    return {
        "round_trips": 2 * n,
        "host_wall_ms_per_access": 1e3 * wall / (2 * n),
        "sim_cycles_per_access": cycles,
        "gateware_time_us_per_access_at_100MHz": cycles / 100.0,
        "dump_registers": len(dump),
        "dump_wall_ms": 1e3 * dump_wall,
    }
