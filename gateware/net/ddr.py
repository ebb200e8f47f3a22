"""ECP5 DDR I/O and input/output delay primitives behind simulatable wrappers.

Reference: Lattice FPGA-TN-02035 "ECP5 and ECP5-5G High-Speed I/O Interface" (IDDRX1F,
ODDRX1F, DELAYG). On a Lattice ECP5 platform each wrapper instantiates the primitive with
:class:`~amaranth.hdl.Instance`; with ``platform=None`` (pysim, ``verilog.convert`` for cocotb) it
elaborates a behavioural model with the same cycle timing, so the RGMII MAC runs unchanged in both.

Components
----------
:class:`DDRInput` (IDDRX1F), domain ``domain``:
    ``d: In(w)`` pin value; ``q0: Out(w)`` the value sampled at a rising edge and ``q1: Out(w)``
    the value sampled at the following falling edge, both updated together on the next rising
    edge (latency: 1 rising edge after the falling-edge sample).
:class:`DDROutput` (ODDRX1F), domain ``domain``:
    ``d0, d1: In(w)`` registered on a rising edge; ``q: Out(w)`` drives ``d0`` during the high
    half period that follows and ``d1`` during the low half period.
:class:`Delay` (DELAYG, ``DEL_MODE="USER_DEFINED"``):
    ``i: In(w)`` → ``o: Out(w)`` delayed by ``taps`` x about 25 ps (0 to 127 taps). The
    behavioural model has zero delay (timing is the board's concern, see
    :mod:`combkey.gateware.net.rgmii`).
"""
from amaranth.hdl import ClockDomain, ClockSignal, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DDRInput", "DDROutput", "Delay", "DELAY_TAP_PS", "delay_taps"]

#: Nominal DELAYG step of the ECP5 (FPGA-TN-02035, "Input/Output Delay").
DELAY_TAP_PS = 25


def delay_taps(delay_ps):
    """Return the DELAYG tap count for ``delay_ps`` picoseconds (0 to 127 taps)."""
    if not isinstance(delay_ps, (int, float)) or not 0 <= delay_ps <= 127 * DELAY_TAP_PS:
        raise ValueError(f"delay_ps must be a number in [0, {127 * DELAY_TAP_PS}], "
                         f"not {delay_ps!r}")
    return int(round(delay_ps / DELAY_TAP_PS))


def _is_ecp5(platform):
    return platform is not None and getattr(platform, "family", None) == "ecp5"


class DDRInput(wiring.Component):
    """Input DDR register (see the module docstring); ``width`` bits, clocked by ``domain``."""

    def __init__(self, width, *, domain="sync"):
        self.width = width
        self.domain = domain
        super().__init__({"d": In(width), "q0": Out(width), "q1": Out(width)})

    def elaborate(self, platform):
        m = Module()
        if _is_ecp5(platform):
            for i in range(self.width):
                m.submodules[f"iddr{i}"] = Instance(
                    "IDDRX1F", i_D=self.d[i], i_SCLK=ClockSignal(self.domain), i_RST=0,
                    o_Q0=self.q0[i], o_Q1=self.q1[i])
            return m
        neg = f"{self.domain}_ddrneg"
        cd_neg = ClockDomain(neg, clk_edge="neg", local=True)
        m.domains += cd_neg
        m.d.comb += cd_neg.clk.eq(ClockSignal(self.domain))
        rise = Signal(self.width)
        fall = Signal(self.width)
        m.d[self.domain] += rise.eq(self.d)
        m.d[neg] += fall.eq(self.d)
        m.d[self.domain] += [self.q0.eq(rise), self.q1.eq(fall)]
        return m


class DDROutput(wiring.Component):
    """Output DDR register (see the module docstring); ``width`` bits, clocked by ``domain``."""

    def __init__(self, width, *, domain="sync"):
        self.width = width
        self.domain = domain
        super().__init__({"d0": In(width), "d1": In(width), "q": Out(width)})

    def elaborate(self, platform):
        m = Module()
        if _is_ecp5(platform):
            for i in range(self.width):
                m.submodules[f"oddr{i}"] = Instance(
                    "ODDRX1F", i_D0=self.d0[i], i_D1=self.d1[i],
                    i_SCLK=ClockSignal(self.domain), i_RST=0, o_Q=self.q[i])
            return m
        r0 = Signal(self.width)
        r1 = Signal(self.width)
        m.d[self.domain] += [r0.eq(self.d0), r1.eq(self.d1)]
        m.d.comb += self.q.eq(Mux(ClockSignal(self.domain), r0, r1))
        return m


class Delay(wiring.Component):
    """Fixed input/output delay of ``taps`` DELAYG steps (zero-delay behavioural model)."""

    def __init__(self, width, *, taps):
        if not isinstance(taps, int) or not 0 <= taps <= 127:
            raise ValueError(f"taps must be an integer in [0, 127], not {taps!r}")
        self.width = width
        self.taps = taps
        super().__init__({"i": In(width), "o": Out(width)})

    def elaborate(self, platform):
        m = Module()
        if _is_ecp5(platform) and self.taps:
            for i in range(self.width):
                m.submodules[f"delay{i}"] = Instance(
                    "DELAYG", p_DEL_MODE="USER_DEFINED", p_DEL_VALUE=self.taps,
                    i_A=self.i[i], o_Z=self.o[i])
        else:
            m.d.comb += self.o.eq(self.i)
        return m
