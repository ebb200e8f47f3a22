"""SPI converter drivers for the slow loops: a 16-bit DAC writer and a dual 12-bit ADC reader.

The board pin plans put an SPI DAC Pmod on ``dac__*`` and a dual SPI ADC Pmod on ``adc__*``
(:mod:`combkey.boards`). Both drivers are SPI mode 0 masters (SCLK idles low, the converter
samples on the rising edge) with ``SCLK = f_clk / (2 * div)``; ``div`` is a register (>= 1).

:class:`SPIDAC` (prefix ``dac`` in the nodes)
    For a 16-bit voltage-output DAC of the AD5541A class (Digilent PmodDA3): a frame is CS low,
    16 data bits MSB first, CS high, then an LDAC low pulse that moves the word to the output.
    Every frame phase (each SCLK half, the CS-high gap, the LDAC pulse) lasts ``div`` cycles, so a
    frame takes ``35 * div`` cycles. Input ``i`` carries signed actuator words (two's
    complement, full scale +-2**15); the DAC gets offset binary, ``word ^ 0x8000``, so 0 is
    mid-scale. A word that arrives while a frame is on the wire waits in a one-word buffer; a
    newer word replaces it (the latest actuator value wins) and the replaced one is counted in
    ``superseded``. Registers: ``div`` (RW 8, reset 4), ``manual`` (RW 1: write ``host_word``
    instead of the loop's words), ``host_word`` (RW 16, signed; each write starts a frame when
    ``manual`` is 1), ``frames`` (R 32), ``superseded`` (R 32), ``last`` (R 16, signed: the
    last word sent).

:class:`SPIADC` (prefix ``adc``)
    For two 12-bit ADCs of the AD7476A class sharing CS and SCLK (Digilent PmodAD1): CS low
    starts a conversion; the converters shift out 4 zeros and 12 data bits MSB first, each bit
    changing after a falling SCLK edge; the master samples ``cipo`` at each rising edge (``div``
    cycles after the falling one). One conversion every ``period`` cycles (register, >= the
    frame length ``33 * div + 1``; 0 stops). Results: ``ch0``, ``ch1`` (R 12) and the stream
    ``o`` (both channels, ``ch0`` in the low half), ``samples`` (R 32), ``late`` (R 32:
    conversions due while a frame was still running, which are skipped and counted).

Each block has its cycle model in this file (:class:`SPIDACModel`, :class:`SPIADCModel`), which
the tests run beside the simulated hardware with the same inputs, comparing every pin on every
cycle; :func:`spi_decode` recovers the frames from pin traces independently of both, and
:class:`AD7476Model` stands in for the converters.
"""
import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .regs import Access, Reg

__all__ = ["SPIDAC", "SPIADC", "SPIDACModel", "SPIADCModel", "AD7476Model", "spi_decode",
           "DAC_BITS", "ADC_BITS", "ADC_FRAME_BITS", "dac_frame_cycles", "adc_frame_cycles"]

DAC_BITS = 16
ADC_BITS = 12
ADC_FRAME_BITS = 16


def dac_frame_cycles(div):
    """Cycles of one DAC frame: 16 SCLK periods, the CS-high gap and the LDAC pulse."""
    return (2 * DAC_BITS + 3) * div


def adc_frame_cycles(div):
    """Cycles of one ADC frame (CS low to CS high, plus one idle cycle)."""
    return (2 * ADC_FRAME_BITS + 1) * div + 1


def _pins_signature():
    return wiring.Signature({"cs_n": Out(1), "copi": Out(1), "sclk": Out(1), "ldac_n": Out(1)})


class SPIDAC(wiring.Component):
    """16-bit SPI DAC writer (see the module docstring).

    Members
    -------
    i : In(stream.Signature(signed(16)))
        Actuator words (always accepted; latest wins).
    pins : Out(cs_n, copi, sclk, ldac_n)
    div, manual, host_word, host_word_stb, frames, superseded, last
        Register ports (see :meth:`registers`).
    """

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(signed(DAC_BITS))),
            "pins": Out(_pins_signature()),
            "div": In(8), "manual": In(1), "host_word": In(signed(DAC_BITS)),
            "host_word_stb": In(1),
            "frames": Out(32), "superseded": Out(32), "last": Out(signed(DAC_BITS)),
        })

    @staticmethod
    def registers():
        return [
            Reg("div", 8, Access.RW, reset=4, doc="SCLK half period in clock cycles (>= 1)"),
            Reg("manual", 1, Access.RW, doc="1: send host_word instead of the loop's words"),
            Reg("host_word", 16, Access.RW, signed=True,
                doc="word sent on each write while manual is 1 (two's complement)"),
            Reg("frames", 32, Access.R, doc="DAC frames sent"),
            Reg("superseded", 32, Access.R,
                doc="words replaced by a newer one before they were sent"),
            Reg("last", 16, Access.R, signed=True, doc="last word sent"),
        ]

    def elaborate(self, platform):
        m = Module()
        div = Mux(self.div == 0, 1, self.div)
        pend = Signal(DAC_BITS)
        pend_valid = Signal()
        shreg = Signal(DAC_BITS)
        bit = Signal(range(DAC_BITS + 1))
        timer = Signal(8)
        frames = Signal(32)
        superseded = Signal(32)
        last = Signal(signed(DAC_BITS))
        cs_n = Signal(init=1)
        sclk = Signal()
        ldac_n = Signal(init=1)
        m.d.comb += [self.i.ready.eq(1), self.frames.eq(frames), self.superseded.eq(superseded),
                     self.last.eq(last), self.pins.cs_n.eq(cs_n), self.pins.sclk.eq(sclk),
                     self.pins.ldac_n.eq(ldac_n), self.pins.copi.eq(shreg[-1])]

        new_valid = Mux(self.manual, self.host_word_stb, self.i.valid)
        new_word = Mux(self.manual, self.host_word, self.i.payload)
        take = Signal()                 # the FSM takes the pending word this cycle
        with m.If(new_valid):
            m.d.sync += [pend.eq(new_word), pend_valid.eq(1)]
            with m.If(pend_valid & ~take):
                m.d.sync += superseded.eq(superseded + 1)
        with m.Elif(take):
            m.d.sync += pend_valid.eq(0)

        tick = timer == div - 1
        m.d.sync += timer.eq(Mux(tick, 0, timer + 1))
        with m.FSM():
            with m.State("IDLE"):
                m.d.sync += timer.eq(0)
                with m.If(pend_valid):
                    m.d.comb += take.eq(1)
                    m.d.sync += [shreg.eq(pend ^ 0x8000), last.eq(pend), cs_n.eq(0),
                                 bit.eq(0)]
                    m.next = "LOW"
            with m.State("LOW"):            # data set up while SCLK is low
                with m.If(tick):
                    m.d.sync += sclk.eq(1)
                    m.next = "HIGH"
            with m.State("HIGH"):           # the DAC samples at the rising edge
                with m.If(tick):
                    m.d.sync += [sclk.eq(0), shreg.eq(shreg << 1), bit.eq(bit + 1)]
                    with m.If(bit == DAC_BITS - 1):
                        m.d.sync += cs_n.eq(1)
                        m.next = "GAP"
                    with m.Else():
                        m.next = "LOW"
            with m.State("GAP"):
                with m.If(tick):
                    m.d.sync += ldac_n.eq(0)
                    m.next = "LOAD"
            with m.State("LOAD"):
                with m.If(tick):
                    m.d.sync += [ldac_n.eq(1), frames.eq(frames + 1)]
                    m.next = "IDLE"
        return m


class SPIDACModel:
    """Cycle model of :class:`SPIDAC`: :meth:`step` takes one cycle's inputs and returns the
    pins ``(cs_n, copi, sclk, ldac_n)`` seen during that cycle (before the clock edge)."""

    def __init__(self):
        self.pend = 0
        self.pend_valid = False
        self.shreg = 0
        self.bit = 0
        self.timer = 0
        self.frames = 0
        self.superseded = 0
        self.last = 0
        self.cs_n, self.sclk, self.ldac_n = 1, 0, 1
        self.state = "IDLE"

    def step(self, *, valid=0, word=0, manual=0, host_word=0, host_stb=0, div=4):
        div = div or 1
        pins = (self.cs_n, (self.shreg >> (DAC_BITS - 1)) & 1, self.sclk, self.ldac_n)
        new_valid, new_word = (host_stb, host_word) if manual else (valid, word)
        take = self.state == "IDLE" and self.pend_valid
        pend, pend_valid, superseded = self.pend, self.pend_valid, self.superseded
        if new_valid:
            pend, pend_valid = new_word & 0xFFFF, True
            if self.pend_valid and not take:
                superseded += 1
        elif take:
            pend_valid = False
        tick = self.timer == div - 1
        timer = 0 if tick else (self.timer + 1) & 0xFF
        st = self.state
        if st == "IDLE":
            timer = 0
            if self.pend_valid:
                self.shreg = self.pend ^ 0x8000
                self.last = self.pend - (1 << 16) if self.pend & 0x8000 else self.pend
                self.cs_n, self.bit, st = 0, 0, "LOW"
        elif st == "LOW":
            if tick:
                self.sclk, st = 1, "HIGH"
        elif st == "HIGH":
            if tick:
                self.sclk = 0
                self.shreg = (self.shreg << 1) & 0xFFFF
                self.bit += 1
                if self.bit == DAC_BITS:
                    self.cs_n, st = 1, "GAP"
                else:
                    st = "LOW"
        elif st == "GAP":
            if tick:
                self.ldac_n, st = 0, "LOAD"
        elif st == "LOAD":
            if tick:
                self.ldac_n, st = 1, "IDLE"
                self.frames += 1
        self.state, self.timer = st, timer
        self.pend, self.pend_valid, self.superseded = pend, pend_valid, superseded
        return pins


def spi_decode(cs_n, sclk, data_line, nbits):
    """Decode SPI mode-0 frames from per-cycle pin traces.

    Returns the list of words (MSB first, ``nbits`` each) clocked at rising SCLK edges while
    CS was low. Raises ``ValueError`` on a frame with the wrong bit count.
    """
    cs_n, sclk, data_line = (np.asarray(a, dtype=np.int64) for a in (cs_n, sclk, data_line))
    words, bits = [], []
    in_frame = False
    for t in range(1, len(cs_n)):
        if not cs_n[t - 1] and not in_frame:
            in_frame, bits = True, []
        if in_frame and not cs_n[t - 1] and sclk[t] and not sclk[t - 1]:
            bits.append(int(data_line[t - 1]))   # value held while the edge happened
        if in_frame and cs_n[t]:
            if len(bits) != nbits:
                raise ValueError(f"frame ending at cycle {t} has {len(bits)} bits, not {nbits}")
            words.append(int("".join(map(str, bits)), 2))
            in_frame = False
    return words


class SPIADC(wiring.Component):
    """Dual 12-bit SPI ADC reader (see the module docstring).

    Members
    -------
    pins : Out(cs_n, sclk) + In(cipo[2])
    o : Out(stream.Signature(ArrayLayout(12, 2), always_ready=True))
        One beat per conversion, the cycle after ``ch0``/``ch1`` take the new samples.
    div, period, ch0, ch1, samples, late
        Register ports (see :meth:`registers`).
    """

    def __init__(self):
        super().__init__({
            "pins": Out(wiring.Signature({"cs_n": Out(1), "sclk": Out(1), "cipo": In(2)})),
            "o": Out(stream.Signature(data.ArrayLayout(ADC_BITS, 2), always_ready=True)),
            "div": In(8), "period": In(24),
            "ch0": Out(ADC_BITS), "ch1": Out(ADC_BITS), "samples": Out(32), "late": Out(32),
        })

    @staticmethod
    def registers():
        return [
            Reg("div", 8, Access.RW, reset=4, doc="SCLK half period in clock cycles (>= 1)"),
            Reg("period", 24, Access.RW,
                doc="clock cycles between conversions (0 stops; >= 33 * div + 1)"),
            Reg("ch0", ADC_BITS, Access.R, doc="last sample of ADC 0 (straight binary)"),
            Reg("ch1", ADC_BITS, Access.R, doc="last sample of ADC 1 (straight binary)"),
            Reg("samples", 32, Access.R, doc="conversions completed"),
            Reg("late", 32, Access.R,
                doc="conversions due while a frame was still running (skipped)"),
        ]

    def elaborate(self, platform):
        m = Module()
        div = Mux(self.div == 0, 1, self.div)
        timer = Signal(8)
        tick = timer == div - 1
        m.d.sync += timer.eq(Mux(tick, 0, timer + 1))
        count = Signal(24)
        due = Signal()
        with m.If(self.period == 0):
            m.d.sync += count.eq(0)
        with m.Elif(count >= self.period - 1):
            m.d.sync += count.eq(0)
            m.d.comb += due.eq(1)
        with m.Else():
            m.d.sync += count.eq(count + 1)

        cs_n = Signal(init=1)
        sclk = Signal()
        sh0 = Signal(ADC_FRAME_BITS)
        sh1 = Signal(ADC_FRAME_BITS)
        bit = Signal(range(ADC_FRAME_BITS + 1))
        ch0 = Signal(ADC_BITS)
        ch1 = Signal(ADC_BITS)
        samples = Signal(32)
        late = Signal(32)
        o_valid = Signal()
        m.d.sync += o_valid.eq(0)
        m.d.comb += [self.pins.cs_n.eq(cs_n), self.pins.sclk.eq(sclk), self.ch0.eq(ch0),
                     self.ch1.eq(ch1), self.samples.eq(samples), self.late.eq(late),
                     self.o.payload.eq(Cat(ch0, ch1)), self.o.valid.eq(o_valid)]
        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.sync += timer.eq(0)
                with m.If(due):
                    m.d.sync += [cs_n.eq(0), bit.eq(0)]
                    m.next = "SCLK_LO"     # CS low: the first bit is out; SCLK still low
            with m.State("SCLK_LO"):
                with m.If(tick):           # rising edge: sample the bit on cipo
                    m.d.sync += [sclk.eq(1), bit.eq(bit + 1),
                                 sh0.eq(Cat(self.pins.cipo[0], sh0[:-1])),
                                 sh1.eq(Cat(self.pins.cipo[1], sh1[:-1]))]
                    m.next = "SCLK_HI"
            with m.State("SCLK_HI"):
                with m.If(tick):           # falling edge: the converters shift the next bit
                    m.d.sync += sclk.eq(0)
                    with m.If(bit == ADC_FRAME_BITS):
                        m.d.sync += cs_n.eq(1)
                        m.next = "DONE"
                    with m.Else():
                        m.next = "SCLK_LO"
            with m.State("DONE"):
                with m.If(tick):
                    m.d.sync += [ch0.eq(sh0[:ADC_BITS]), ch1.eq(sh1[:ADC_BITS]),
                                 samples.eq(samples + 1), o_valid.eq(1)]
                    m.next = "IDLE"
        # A conversion due while a frame runs is skipped and counted.
        with m.If(due & ~fsm.ongoing("IDLE")):
            m.d.sync += late.eq(late + 1)
        return m


class SPIADCModel:
    """Cycle model of :class:`SPIADC`; :meth:`step` takes one cycle's ``cipo`` (2 bits) and
    registers, returns ``(cs_n, sclk, o_valid, ch0, ch1)`` seen during that cycle."""

    def __init__(self):
        self.timer = 0
        self.count = 0
        self.cs_n, self.sclk = 1, 0
        self.sh = [0, 0]
        self.bit = 0
        self.ch = [0, 0]
        self.samples = 0
        self.late = 0
        self.o_valid = 0
        self.state = "IDLE"

    def step(self, *, cipo=0, div=4, period=0):
        div = div or 1
        due = False
        count = self.count
        if period == 0:
            count = 0
        elif self.count >= period - 1:
            count, due = 0, True
        else:
            count += 1
        tick = self.timer == div - 1
        timer = 0 if tick else (self.timer + 1) & 0xFF
        out = (self.cs_n, self.sclk, self.o_valid, self.ch[0], self.ch[1])
        self.o_valid = 0
        st = self.state
        if due and st != "IDLE":
            self.late += 1
        if st == "IDLE":
            timer = 0
            if due:
                self.cs_n, self.bit, st = 0, 0, "SCLK_LO"
        elif st == "SCLK_LO":
            if tick:
                self.sclk = 1
                for k in range(2):
                    self.sh[k] = ((self.sh[k] << 1) | ((cipo >> k) & 1)) & 0xFFFF
                self.bit += 1
                st = "SCLK_HI"
        elif st == "SCLK_HI":
            if tick:
                self.sclk = 0
                if self.bit == ADC_FRAME_BITS:
                    self.cs_n, st = 1, "DONE"
                else:
                    st = "SCLK_LO"
        elif st == "DONE":
            if tick:
                self.ch = [self.sh[0] & 0xFFF, self.sh[1] & 0xFFF]
                self.samples += 1
                self.o_valid = 1
                st = "IDLE"
        self.state, self.timer, self.count = st, timer, count
        return out


class AD7476Model:
    """Two AD7476A-class converters on shared CS/SCLK: :meth:`cipo` gives the data lines for
    the pin levels of the current cycle. Each frame (CS falling) samples ``values()`` and shifts
    out 4 zeros and 12 bits MSB first, a new bit after every falling SCLK edge."""

    def __init__(self, values):
        self.values = values        # callable -> (v0, v1)
        self.words = (0, 0)
        self.index = 0
        self.prev_cs_n, self.prev_sclk = 1, 0
        self.sampled = []

    def cipo(self, cs_n, sclk):
        if self.prev_cs_n and not cs_n:
            v = self.values()
            self.sampled.append(v)
            self.words, self.index = (v[0] & 0xFFF, v[1] & 0xFFF), 0
        elif not cs_n and self.prev_sclk and not sclk:
            self.index += 1
        self.prev_cs_n, self.prev_sclk = cs_n, sclk
        if cs_n or self.index >= ADC_FRAME_BITS:
            return 0
        shift = ADC_FRAME_BITS - 1 - self.index
        return ((self.words[0] >> shift) & 1) | (((self.words[1] >> shift) & 1) << 1)
