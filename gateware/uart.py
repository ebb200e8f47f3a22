"""8N1 UART: receiver, transmitter, a node link, and their cycle-exact Python models.

Line format: idle high, one start bit (0), eight data bits least significant first, one stop
bit (1); no parity. Every bit lasts ``divisor`` clock cycles, with ``divisor = round(clk_hz /
baud)`` (:func:`uart_divisor`). The divisor must be at least :data:`MIN_DIVISOR` and the baud rate
it gives must be within :data:`MAX_BAUD_ERROR` (2 %) of the one asked for.

Components
----------
:class:`UARTRx` (``clk_hz``, ``baud``, ``counter_width=16``)
    ``rx_pin: In(1, init=1)`` asynchronous line; ``o: Out(stream.Signature(8))`` received bytes;
    ``framing_errors: Out(counter_width)`` and ``overruns: Out(counter_width)`` saturating event
    counters.
:class:`UARTTx` (``clk_hz``, ``baud``)
    ``i: In(stream.Signature(8))`` bytes to send; ``tx_pin: Out(1, init=1)`` line.
:class:`UARTLink` (``node``, ``clk_hz=node.clk_hz``, ``baud=115200``, ``rx_fifo_depth=16``)
    Puts a node that speaks bytes (``node.rx: In(stream.Signature(8))`` requests in,
    ``node.tx: Out(stream.Signature(8))`` responses out) behind a UART: ``rx_pin: In(1, init=1)``,
    ``tx_pin: Out(1, init=1)``, ``framing_errors`` and ``overruns: Out(counter_width)``.

Receiver
--------
The line passes a two-flip-flop synchroniser; call its output ``s`` (``s[t]`` is the pin two cycles
earlier). Each sample is the majority of three consecutive ``s`` values. In idle, the first low
``s`` at cycle ``t0`` starts a frame; the start bit is sampled at ``t0 + divisor // 2 + 1`` (the
majority window is then centred half a bit after the edge) and every following bit ``divisor``
cycles later. A start sample that reads 1 is a glitch: the receiver goes back to idle and nothing
is counted. A stop sample that reads 0 is a framing error: the byte is dropped, ``framing_errors``
counts it, and the receiver waits for the line to go high before it looks for the next start bit
(so a break counts once). A good byte is offered on ``o`` right after its stop sample, i.e.
``4 + divisor // 2 + 9 * divisor`` cycles (:func:`uart_rx_latency`) after its start edge on the
pin, and stays valid
until taken. A byte that completes while the previous one is still not taken is dropped and
counted in ``overruns``. Counters saturate at ``2**counter_width - 1``.

Tolerance: the receiver samples the stop bit ``9.5`` bits after the start edge with a window of
three cycles, so it accepts a sender whose bit time is off by a few percent; the tests cover
+-2 % at ``divisor >= 8``.

Transmitter
-----------
``i.ready`` is high in idle and in the last cycle of a stop bit, so bytes offered back to back go
out with no idle time between frames. A byte accepted at clock edge ``t`` drives its start bit on
``tx_pin`` from cycle ``t + 1``.

Models
------
:func:`uart_encode` gives the line levels of frames per clock; :func:`uart_decode` is the
cycle-exact model of :class:`UARTRx`; :func:`uart_tx_model` is the cycle-exact model of
:class:`UARTTx` driven by a producer that offers byte ``k`` after ``gaps[k]`` idle cycles.
"""
import dataclasses

import numpy as np
from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MIN_DIVISOR", "MAX_BAUD_ERROR", "uart_divisor", "UARTRx", "UARTTx", "UARTLink",
           "uart_rx_latency", "uart_encode", "uart_decode", "uart_tx_model", "RxTrace"]

#: Smallest accepted clock cycles per bit (three-sample majority needs room around mid-bit).
MIN_DIVISOR = 8
#: Largest accepted relative error between the asked and the achieved baud rate.
MAX_BAUD_ERROR = 0.02
#: Bits per 8N1 frame (start, 8 data, stop).
FRAME_BITS = 10


def uart_divisor(clk_hz, baud):
    """Return the clock cycles per bit for ``baud`` at ``clk_hz``; reject what cannot work.

    Raises
    ------
    TypeError, ValueError
        Naming ``clk_hz`` or ``baud`` when a value is not a positive number, when the divisor is
        below :data:`MIN_DIVISOR`, or when the achieved baud rate is off by more than 2 %.
    """
    for name, value in (("clk_hz", clk_hz), ("baud", baud)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a positive number, not {value!r}")
        if not value > 0:
            raise ValueError(f"{name} must be a positive number, not {value!r}")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud must be at most clk_hz / {MIN_DIVISOR} = "
                         f"{clk_hz / MIN_DIVISOR:.6g} (divisor {divisor} < {MIN_DIVISOR}), "
                         f"not {baud!r}")
    error = abs(clk_hz / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"baud must be reachable within {MAX_BAUD_ERROR:.0%} from clk_hz="
                         f"{clk_hz!r} (divisor {divisor} gives {clk_hz / divisor:.6g} baud, "
                         f"{error:.2%} off), not {baud!r}")
    return divisor


def uart_rx_latency(divisor):
    """Cycles from a start edge on the pin to ``o.valid`` of :class:`UARTRx`.

    Two synchroniser stages, ``divisor // 2 + 1`` cycles to the start sample, nine bits to the
    stop sample, and one cycle to register the byte.
    """
    return 2 + divisor // 2 + 1 + 9 * divisor + 1


def _check_counter_width(counter_width):
    if isinstance(counter_width, bool) or not isinstance(counter_width, int) \
            or not 1 <= counter_width <= 32:
        raise ValueError(f"counter_width must be an int in 1..32, not {counter_width!r}")


class UARTRx(wiring.Component):
    """8N1 receiver with start-bit validation and three-sample majority voting.

    Parameters
    ----------
    clk_hz : int or float
        Clock frequency of the ``sync`` domain, Hz.
    baud : int or float
        Bits per second.
    counter_width : int
        Width of the saturating event counters, 1..32.

    Members
    -------
    rx_pin : In(1, init=1)
        Line input, asynchronous (synchronised inside).
    o : Out(stream.Signature(8))
        Received bytes; ``valid`` holds until ``ready``.
    framing_errors : Out(counter_width)
        Frames whose stop bit read 0 (dropped).
    overruns : Out(counter_width)
        Good bytes dropped because the previous one had not been taken.

    Latency: a byte is valid ``4 + divisor // 2 + 9 * divisor`` cycles after its start edge.
    """

    def __init__(self, *, clk_hz, baud, counter_width=16):
        self.divisor = uart_divisor(clk_hz, baud)
        _check_counter_width(counter_width)
        self.clk_hz = clk_hz
        self.baud = baud
        self.counter_width = counter_width
        super().__init__({
            "rx_pin": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "framing_errors": Out(counter_width),
            "overruns": Out(counter_width),
        })

    @property
    def latency(self):
        """Cycles from the start edge on the pin to ``o.valid``."""
        return uart_rx_latency(self.divisor)

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        sync0 = Signal(init=1)
        s = Signal(init=1)
        s1 = Signal(init=1)
        s2 = Signal(init=1)
        m.d.sync += [sync0.eq(self.rx_pin), s.eq(sync0), s1.eq(s), s2.eq(s1)]
        majority = Signal()
        m.d.comb += majority.eq((s & s1) | (s & s2) | (s1 & s2))

        cnt = Signal(range(d + 1))
        bit = Signal(range(8))
        shreg = Signal(8)
        sample = Signal()
        m.d.comb += sample.eq(cnt == d)
        max_count = (1 << self.counter_width) - 1

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM(init="IDLE"):
            with m.State("IDLE"):
                with m.If(~s):
                    m.d.sync += cnt.eq(d - d // 2)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(sample):
                    m.d.sync += [cnt.eq(1), bit.eq(0)]
                    with m.If(majority):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(sample):
                    m.d.sync += [cnt.eq(1), bit.eq(bit + 1), shreg.eq(Cat(shreg[1:], majority))]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(sample):
                    with m.If(majority):
                        with m.If(self.o.valid & ~self.o.ready):
                            with m.If(self.overruns != max_count):
                                m.d.sync += self.overruns.eq(self.overruns + 1)
                        with m.Else():
                            m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        with m.If(self.framing_errors != max_count):
                            m.d.sync += self.framing_errors.eq(self.framing_errors + 1)
                        m.next = "WAIT_HIGH"
            with m.State("WAIT_HIGH"):
                with m.If(s):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """8N1 transmitter; back-to-back bytes leave with no idle time between frames.

    Parameters
    ----------
    clk_hz : int or float
        Clock frequency of the ``sync`` domain, Hz.
    baud : int or float
        Bits per second.

    Members
    -------
    i : In(stream.Signature(8))
        Bytes to send. ``ready`` is high in idle and in the last cycle of a stop bit.
    tx_pin : Out(1, init=1)
        Line output (registered).

    Throughput: one byte per ``10 * divisor`` cycles. Latency: the start bit begins one cycle
    after the byte is accepted.
    """

    def __init__(self, *, clk_hz, baud):
        self.divisor = uart_divisor(clk_hz, baud)
        self.clk_hz = clk_hz
        self.baud = baud
        super().__init__({"i": In(stream.Signature(8)), "tx_pin": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        busy = Signal()
        cnt = Signal(range(d + 1))
        bitn = Signal(range(FRAME_BITS))
        shreg = Signal(FRAME_BITS - 1)  # data bits then stop bit, still to send
        last = Signal()
        m.d.comb += [
            last.eq(busy & (cnt == d) & (bitn == FRAME_BITS - 1)),
            self.i.ready.eq(~busy | last),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                busy.eq(1), cnt.eq(1), bitn.eq(0),
                shreg.eq(Cat(self.i.payload, Const(1, 1))),
                self.tx_pin.eq(0),
            ]
        with m.Elif(busy):
            with m.If(cnt == d):
                with m.If(bitn == FRAME_BITS - 1):
                    m.d.sync += busy.eq(0)
                with m.Else():
                    m.d.sync += [cnt.eq(1), bitn.eq(bitn + 1), self.tx_pin.eq(shreg[0]),
                                 shreg.eq(shreg >> 1)]
            with m.Else():
                m.d.sync += cnt.eq(cnt + 1)
        return m


class UARTLink(wiring.Component):
    """A byte-stream node behind a UART (the board top places this between pins and node).

    Parameters
    ----------
    node : wiring.Component
        Has ``rx: In(stream.Signature(8))`` (requests into the node) and
        ``tx: Out(stream.Signature(8))`` (responses out of the node). Added as submodule
        ``node``.
    clk_hz : int or float, optional
        Clock of the ``sync`` domain, Hz; defaults to ``node.clk_hz``.
    baud : int or float
        Bits per second, both directions (default 115200).
    rx_fifo_depth : int
        Bytes buffered between receiver and node (0: none, the receiver's own one-byte output
        register only). A byte arriving when the buffer is full is dropped and counted.
    counter_width : int
        Width of the saturating counters.

    Members
    -------
    rx_pin : In(1, init=1)
        Line from the host (asynchronous).
    tx_pin : Out(1, init=1)
        Line to the host.
    framing_errors : Out(counter_width)
        Receiver framing errors (bytes dropped).
    overruns : Out(counter_width)
        Bytes dropped because the node (and the FIFO) did not take them in time.
    """

    def __init__(self, node, *, clk_hz=None, baud=115200, rx_fifo_depth=16, counter_width=16):
        members = getattr(getattr(node, "signature", None), "members", None)
        for name, flow in (("rx", In), ("tx", Out)):
            want = flow(stream.Signature(8))
            if members is None or name not in members or members[name] != want:
                raise TypeError(f"node must have a member {name}: {want!r}, not {node!r}")
        if clk_hz is None:
            clk_hz = getattr(node, "clk_hz", None)
            if clk_hz is None:
                raise TypeError(f"clk_hz must be given when the node has no clk_hz, "
                                f"not {clk_hz!r}")
        if isinstance(rx_fifo_depth, bool) or not isinstance(rx_fifo_depth, int) \
                or rx_fifo_depth < 0:
            raise ValueError(f"rx_fifo_depth must be a non-negative int, not {rx_fifo_depth!r}")
        self.node = node
        self.clk_hz = clk_hz
        self.baud = baud
        self.rx_fifo_depth = rx_fifo_depth
        self.uart_rx = UARTRx(clk_hz=clk_hz, baud=baud, counter_width=counter_width)
        self.uart_tx = UARTTx(clk_hz=clk_hz, baud=baud)
        self.divisor = self.uart_rx.divisor
        super().__init__({
            "rx_pin": In(1, init=1),
            "tx_pin": Out(1, init=1),
            "framing_errors": Out(counter_width),
            "overruns": Out(counter_width),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.node = node = self.node
        m.submodules.uart_rx = rx = self.uart_rx
        m.submodules.uart_tx = tx = self.uart_tx
        m.d.comb += [
            rx.rx_pin.eq(self.rx_pin),
            self.tx_pin.eq(tx.tx_pin),
            self.framing_errors.eq(rx.framing_errors),
            self.overruns.eq(rx.overruns),
        ]
        # Nodes map the link's error counters into their registers (link.*).
        members = node.signature.members
        if "link_framing_errors" in members:
            m.d.comb += node.link_framing_errors.eq(rx.framing_errors)
        if "link_overruns" in members:
            m.d.comb += node.link_overruns.eq(rx.overruns)
        if self.rx_fifo_depth:
            m.submodules.rx_fifo = buf = fifo.SyncFIFOBuffered(width=8,
                                                               depth=self.rx_fifo_depth)
            wiring.connect(m, rx.o, buf.w_stream)
            wiring.connect(m, buf.r_stream, node.rx)
        else:
            wiring.connect(m, rx.o, node.rx)
        wiring.connect(m, node.tx, tx.i)
        return m


# --- models -------------------------------------------------------------------------------------


def _bytes_array(data, name="data"):
    arr = np.asarray(list(data) if isinstance(data, (bytes, bytearray)) else data)
    if arr.ndim != 1 or (arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0
                                       or arr.max() > 255)):
        raise ValueError(f"{name} must be a sequence of bytes (0..255), not {data!r}")
    return arr.astype(np.int64)


def uart_encode(data, divisor, *, stop_bits=None):
    """Return the 8N1 line levels (uint8 0/1, one per clock) of ``data`` sent back to back.

    ``divisor`` (cycles per bit) may be fractional, to model a sender whose baud rate differs
    from the receiver's: bit ``k`` of the whole stream occupies clocks
    ``[round(k * divisor), round((k + 1) * divisor))``. ``stop_bits`` optionally gives the
    stop-bit level of each frame (0 makes a framing error); default all 1.
    """
    data = _bytes_array(data)
    if not divisor >= 1:
        raise ValueError(f"divisor must be >= 1, not {divisor!r}")
    stop = np.ones(len(data), np.int64) if stop_bits is None else np.asarray(stop_bits)
    if stop.shape != data.shape:
        raise ValueError(f"stop_bits must have one level per byte, not {stop_bits!r}")
    bits = np.zeros((len(data), FRAME_BITS), np.uint8)
    bits[:, 1:9] = (data[:, None] >> np.arange(8)) & 1
    bits[:, 9] = stop
    bits = bits.ravel()
    edges = np.round(np.arange(len(bits) + 1) * float(divisor)).astype(np.int64)
    return np.repeat(bits, np.diff(edges))


@dataclasses.dataclass
class RxTrace:
    """Per-cycle outputs of :class:`UARTRx` (values during each cycle, before its clock edge).

    ``data`` is the list of bytes taken by the consumer (``valid & ready``), in order.
    """

    valid: np.ndarray
    payload: np.ndarray
    framing_errors: np.ndarray
    overruns: np.ndarray
    data: bytes


def uart_decode(levels, divisor, *, ready=None, counter_width=16):
    """Cycle-exact model of :class:`UARTRx` for the pin levels ``levels`` (one per clock).

    ``ready`` is the consumer's ``o.ready`` per cycle (default always 1). Returns an
    :class:`RxTrace` whose arrays have one entry per input cycle.
    """
    levels = np.asarray(levels).astype(np.int64)
    n = len(levels)
    ready = np.ones(n, np.int64) if ready is None else np.asarray(ready).astype(np.int64)
    if ready.shape != levels.shape:
        raise ValueError(f"ready must have one value per cycle, not shape {ready.shape}")
    d = int(divisor)
    if d != divisor or d < MIN_DIVISOR:
        raise ValueError(f"divisor must be an int >= {MIN_DIVISOR}, not {divisor!r}")
    max_count = (1 << counter_width) - 1
    out_valid = np.zeros(n, np.uint8)
    out_payload = np.zeros(n, np.int64)
    out_fe = np.zeros(n, np.int64)
    out_ov = np.zeros(n, np.int64)
    taken = bytearray()

    sync0 = s = s1 = s2 = 1
    state, cnt, bit, shreg = "IDLE", 0, 0, 0
    valid = payload = fe = ov = 0
    for t in range(n):
        out_valid[t], out_payload[t], out_fe[t], out_ov[t] = valid, payload, fe, ov
        rdy = ready[t]
        if valid and rdy:
            taken.append(payload)
        majority = (s & s1) | (s & s2) | (s1 & s2)
        sample = cnt == d
        n_valid = 0 if rdy else valid
        n_payload, n_fe, n_ov = payload, fe, ov
        n_state, n_cnt, n_bit, n_shreg = state, cnt, bit, shreg
        if state == "IDLE":
            if not s:
                n_cnt, n_state = d - d // 2, "START"
        elif state == "START":
            n_cnt = cnt + 1
            if sample:
                n_cnt, n_bit = 1, 0
                n_state = "IDLE" if majority else "DATA"
        elif state == "DATA":
            n_cnt = cnt + 1
            if sample:
                n_cnt, n_bit = 1, (bit + 1) & 7
                n_shreg = (shreg >> 1) | (majority << 7)
                if bit == 7:
                    n_state = "STOP"
        elif state == "STOP":
            n_cnt = cnt + 1
            if sample:
                if majority:
                    if valid and not rdy:
                        n_ov = min(ov + 1, max_count)
                    else:
                        n_payload, n_valid = shreg, 1
                    n_state = "IDLE"
                else:
                    n_fe = min(fe + 1, max_count)
                    n_state = "WAIT_HIGH"
        else:  # WAIT_HIGH
            if s:
                n_state = "IDLE"
        sync0, s, s1, s2 = int(levels[t]), sync0, s, s1
        valid, payload, fe, ov = n_valid, n_payload, n_fe, n_ov
        state, cnt, bit, shreg = n_state, n_cnt, n_bit, n_shreg
    return RxTrace(out_valid, out_payload, out_fe, out_ov, bytes(taken))


def uart_tx_model(data, divisor, gaps=None, *, cycles=None):
    """Cycle-exact model of :class:`UARTTx` fed by a producer.

    The producer waits ``gaps[k]`` cycles (default 0) after byte ``k - 1`` was accepted (or
    after cycle 0 for the first byte), then offers byte ``k`` until it is accepted. Returns
    ``(tx_pin, accepted)``: the pin level during each of ``cycles`` cycles (default: until the
    last stop bit ends) and the clock edge at which each byte was accepted.
    """
    data = _bytes_array(data)
    gaps = np.zeros(len(data), np.int64) if gaps is None else np.asarray(gaps, np.int64)
    if gaps.shape != data.shape or (gaps.size and gaps.min() < 0):
        raise ValueError(f"gaps must be one non-negative int per byte, not {gaps!r}")
    d = int(divisor)
    if d != divisor or d < 1:
        raise ValueError(f"divisor must be a positive int, not {divisor!r}")
    pin = []
    accepted = []
    busy, cnt, bitn, shreg, tx = 0, 0, 0, 0, 1
    k, wait = 0, int(gaps[0]) if len(data) else 0
    t = 0
    while True:
        if cycles is None and k == len(data) and not busy:
            pin.append(tx)
            break
        if cycles is not None and t >= cycles:
            break
        pin.append(tx)
        offering = k < len(data) and wait == 0
        last = busy and cnt == d and bitn == FRAME_BITS - 1
        ready = (not busy) or last
        if offering and ready:
            busy, cnt, bitn, tx = 1, 1, 0, 0
            shreg = int(data[k]) | (1 << 8)
            accepted.append(t)
            k += 1
            wait = int(gaps[k]) if k < len(data) else 0
        else:
            if k < len(data) and wait:
                wait -= 1
            if busy:
                if cnt == d:
                    if bitn == FRAME_BITS - 1:
                        busy = 0
                    else:
                        cnt, bitn, tx, shreg = 1, bitn + 1, shreg & 1, shreg >> 1
                else:
                    cnt += 1
        t += 1
    return np.array(pin, np.uint8), np.array(accepted, np.int64)
