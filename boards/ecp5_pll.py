"""ECP5 sysCLOCK PLL (``EHXPLLL``): divider search and the clock generator of every board top.

Reference: Lattice Semiconductor, FPGA-TN-02200, "ECP5 and ECP5-5G sysCLOCK PLL/DCS/DCC Usage
Guide" (PLL block diagram, divider ranges, frequency limits), with the PLL timing table of the
ECP5/ECP5-5G family data sheet (FPGA-DS-02012). The limits below apply to both ECP5 and ECP5-5G.

Frequency plan
--------------
Feedback is taken from the primary output (``FEEDBK_PATH="CLKOP"``), so with the input divider
``CLKI_DIV`` = *R*, the feedback divider ``CLKFB_DIV`` = *F* and the primary output divider
``CLKOP_DIV`` = *P*::

    f_pfd   = f_in / R                  phase-frequency-detector rate
    f_clkop = f_pfd * F                 primary output (the "sync" system clock)
    f_vco   = f_clkop * P               voltage-controlled oscillator
    f_clkos = f_vco / D_k               secondary outputs CLKOS, CLKOS2, CLKOS3 (dividers D_k)

Limits (:data:`LIMITS`, all in Hz): f_in 8 M..400 M, f_pfd 3.125 M..400 M, f_vco 400 M..800 M,
every output 3.125 M..400 M; R in 1..128, F in 1..80, P and D_k in 1..128.

:func:`ecp5_pll_config` searches every (R, F, P) and keeps the solution with the smallest
relative error of the primary output, then the smallest worst error of the secondary outputs,
then the highest VCO frequency (lower jitter). It raises :class:`PLLError` naming the parameter
when no solution lies within ``tolerance``.

Gateware
--------
:class:`ECP5ClockGen` (an ``Elaboratable``: it has no ports, only the board's clock input and
the clock domains it creates) instantiates ``EHXPLLL`` on the board oscillator and drives the
``sync`` domain from CLKOP; each secondary output drives a further named domain. Every domain is
held in reset until the PLL reports ``LOCK`` (optionally with the reset on a global network,
see :class:`ECP5ClockGen`), and gets a clock constraint of its achieved frequency so nextpnr
times it.
"""
import math
from dataclasses import dataclass, field

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    Elaboratable,
    Instance,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib import io
from amaranth.lib.cdc import AsyncFFSynchronizer, ResetSynchronizer

__all__ = ["LIMITS", "PLLError", "PLLConfig", "ecp5_pll_config", "ECP5ClockGen"]

#: Frequency limits (Hz) and divider ranges of the ECP5 EHXPLLL (FPGA-TN-02200).
LIMITS = {
    "f_in": (8e6, 400e6),
    "f_pfd": (3.125e6, 400e6),
    "f_vco": (400e6, 800e6),
    "f_out": (3.125e6, 400e6),
    "clki_div": (1, 128),
    "clkfb_div": (1, 80),
    "clkop_div": (1, 128),
    "clkos_div": (1, 128),
}

#: EHXPLLL names of the secondary outputs, in order.
SECONDARY_OUTPUTS = ("CLKOS", "CLKOS2", "CLKOS3")


class PLLError(ValueError):
    """A requested frequency that the ECP5 PLL cannot make."""


@dataclass(frozen=True)
class PLLConfig:
    """Divider settings of one EHXPLLL and the frequencies they give (Hz)."""

    f_in: float
    clki_div: int
    clkfb_div: int
    clkop_div: int
    #: secondary output dividers, one per requested secondary frequency (CLKOS, CLKOS2, CLKOS3).
    clkos_divs: tuple = ()
    #: frequencies that were asked for: primary first, then the secondaries.
    requested: tuple = field(default=(), compare=False)

    @property
    def f_pfd(self):
        return self.f_in / self.clki_div

    @property
    def f_out(self):
        """Achieved primary (CLKOP) frequency, Hz."""
        return self.f_pfd * self.clkfb_div

    @property
    def f_vco(self):
        return self.f_out * self.clkop_div

    @property
    def f_secondary(self):
        """Achieved secondary output frequencies, Hz, in CLKOS, CLKOS2, CLKOS3 order."""
        return tuple(self.f_vco / d for d in self.clkos_divs)

    @property
    def error(self):
        """Relative error of each output (primary first) against its requested frequency."""
        got = (self.f_out, *self.f_secondary)
        return tuple(abs(g - r) / r for g, r in zip(got, self.requested, strict=False))

    def instance_params(self):
        """Return the ``Instance`` keyword arguments (``p_``/``a_``) of this configuration."""
        params = {
            "p_PLLRST_ENA": "DISABLED",
            "p_INTFB_WAKE": "DISABLED",
            "p_STDBY_ENABLE": "DISABLED",
            "p_DPHASE_SOURCE": "DISABLED",
            "p_OUTDIVIDER_MUXA": "DIVA",
            "p_OUTDIVIDER_MUXB": "DIVB",
            "p_OUTDIVIDER_MUXC": "DIVC",
            "p_OUTDIVIDER_MUXD": "DIVD",
            "p_FEEDBK_PATH": "CLKOP",
            "p_CLKI_DIV": self.clki_div,
            "p_CLKFB_DIV": self.clkfb_div,
            "p_CLKOP_ENABLE": "ENABLED",
            "p_CLKOP_DIV": self.clkop_div,
            "p_CLKOP_CPHASE": self.clkop_div - 1,
            "p_CLKOP_FPHASE": 0,
            "a_FREQUENCY_PIN_CLKI": f"{self.f_in / 1e6:.6f}",
            "a_FREQUENCY_PIN_CLKOP": f"{self.f_out / 1e6:.6f}",
            "a_ICP_CURRENT": "12",
            "a_LPF_RESISTOR": "8",
            "a_MFG_ENABLE_FILTEROPAMP": "1",
            "a_MFG_GMCREF_SEL": "2",
        }
        for name, div, f in zip(SECONDARY_OUTPUTS, self.clkos_divs, self.f_secondary,
                                strict=False):
            params[f"p_{name}_ENABLE"] = "ENABLED"
            params[f"p_{name}_DIV"] = div
            params[f"p_{name}_CPHASE"] = div - 1
            params[f"p_{name}_FPHASE"] = 0
            params[f"a_FREQUENCY_PIN_{name}"] = f"{f / 1e6:.6f}"
        return params

    def describe(self):
        """Return a one-line human summary."""
        sec = ", ".join(f"{n} {f / 1e6:.4f} MHz (/{d})" for n, f, d in
                        zip(SECONDARY_OUTPUTS, self.f_secondary, self.clkos_divs,
                            strict=False))
        return (f"EHXPLLL {self.f_in / 1e6:g} MHz /{self.clki_div} *{self.clkfb_div} -> CLKOP "
                f"{self.f_out / 1e6:.4f} MHz (VCO {self.f_vco / 1e6:.1f} MHz, /{self.clkop_div})"
                + (f"; {sec}" if sec else ""))


def _in_range(value, key):
    lo, hi = LIMITS[key]
    return lo <= value <= hi


def _check_freq(name, value, key="f_out"):
    lo, hi = LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise PLLError(f"{name} must be a frequency in Hz, not {value!r}")
    if not lo <= value <= hi:
        raise PLLError(f"{name} must be between {lo / 1e6:g} MHz and {hi / 1e6:g} MHz for the "
                       f"ECP5 PLL (FPGA-TN-02200), not {value / 1e6:g} MHz")


def ecp5_pll_config(f_in, f_out, secondary=(), *, tolerance=1e-3):
    """Compute EHXPLLL dividers for ``f_out`` (CLKOP) and up to three secondary outputs.

    Parameters
    ----------
    f_in : float
        Reference (board oscillator) frequency, Hz.
    f_out : float
        Requested primary output (system clock) frequency, Hz.
    secondary : sequence of float
        Requested secondary output frequencies, Hz (CLKOS, CLKOS2, CLKOS3), at most three.
    tolerance : float
        Largest accepted relative error of every output.

    Returns
    -------
    PLLConfig

    Raises
    ------
    PLLError
        When an input is out of range or no divider setting reaches every output within
        ``tolerance``; the message names the frequency that cannot be made.
    """
    _check_freq("f_in", f_in, "f_in")
    _check_freq("f_out", f_out)
    secondary = tuple(secondary)
    if len(secondary) > len(SECONDARY_OUTPUTS):
        raise PLLError(f"secondary must list at most {len(SECONDARY_OUTPUTS)} frequencies, "
                       f"not {len(secondary)}")
    for i, f in enumerate(secondary):
        _check_freq(f"secondary[{i}]", f)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) \
            or not 0 <= tolerance < 1:
        raise PLLError(f"tolerance must be a relative error in [0, 1), not {tolerance!r}")

    best_key, best = None, None
    closest_primary = None  # (error, f) of the nearest CLKOP seen, for the error message
    lo_r, hi_r = LIMITS["clki_div"]
    for clki_div in range(lo_r, hi_r + 1):
        f_pfd = f_in / clki_div
        if not _in_range(f_pfd, "f_pfd"):
            continue
        for clkfb_div in range(LIMITS["clkfb_div"][0], LIMITS["clkfb_div"][1] + 1):
            f_op = f_pfd * clkfb_div
            if not _in_range(f_op, "f_out"):
                continue
            err_op = abs(f_op - f_out) / f_out
            p_lo = max(LIMITS["clkop_div"][0], math.ceil(LIMITS["f_vco"][0] / f_op - 1e-9))
            p_hi = min(LIMITS["clkop_div"][1], math.floor(LIMITS["f_vco"][1] / f_op + 1e-9))
            if p_lo > p_hi:
                continue
            if closest_primary is None or err_op < closest_primary[0]:
                closest_primary = (err_op, f_op)
            if err_op > tolerance:
                continue
            for clkop_div in range(p_lo, p_hi + 1):
                f_vco = f_op * clkop_div
                divs, errs = [], []
                for f_s in secondary:
                    d = min(max(round(f_vco / f_s), LIMITS["clkos_div"][0]),
                            LIMITS["clkos_div"][1])
                    divs.append(d)
                    errs.append(abs(f_vco / d - f_s) / f_s
                                if _in_range(f_vco / d, "f_out") else math.inf)
                worst_sec = max(errs, default=0.0)
                if worst_sec > tolerance:
                    continue
                key = (err_op, worst_sec, -f_vco, clki_div)
                if best_key is None or key < best_key:
                    best_key = key
                    best = PLLConfig(f_in=f_in, clki_div=clki_div, clkfb_div=clkfb_div,
                                     clkop_div=clkop_div, clkos_divs=tuple(divs),
                                     requested=(f_out, *secondary))
    if best is None:
        if closest_primary is None or closest_primary[0] > tolerance:
            near = "" if closest_primary is None else \
                f" (closest CLKOP: {closest_primary[1] / 1e6:.6g} MHz)"
            raise PLLError(f"f_out {f_out / 1e6:g} MHz cannot be made from {f_in / 1e6:g} MHz "
                           f"within a relative tolerance of {tolerance:g} by the ECP5 PLL"
                           f"{near}")
        raise PLLError(f"secondary outputs {[f / 1e6 for f in secondary]} MHz cannot be made "
                       f"together with f_out {f_out / 1e6:g} MHz from {f_in / 1e6:g} MHz within "
                       f"a relative tolerance of {tolerance:g}: no VCO frequency in 400..800 MHz "
                       f"divides down to all of them")
    return best


class ECP5ClockGen(Elaboratable):
    """Board oscillator -> EHXPLLL -> ``sync`` (CLKOP) and secondary clock domains.

    Parameters
    ----------
    config : PLLConfig
        Divider settings from :func:`ecp5_pll_config`.
    clk_resource : tuple
        ``(name, number)`` of the board's oscillator resource.
    secondary_domains : sequence of str
        Domain names driven by CLKOS, CLKOS2, CLKOS3 (as many as ``config.clkos_divs``).
    rst_resource : tuple or None
        ``(name, number)`` of an active-high board reset input, or ``None``.

    Members
    -------
    locked : Signal(1), output
        PLL lock, combinational from ``EHXPLLL.LOCK``; every domain is in reset while it is 0.

    Resets: each domain's reset is asserted asynchronously while the PLL is unlocked and released
    synchronously (two flip-flops). For the domains named in ``global_reset`` (default none;
    :class:`~amaranth.lib.cdc.AsyncFFSynchronizer`) the released reset is then driven through a
    ``DCCA`` onto a global network, so that it reaches every flip-flop's LSR of the domain on the
    clock tree instead of on general routing (nextpnr-ecp5 promotes clock nets only). Not the
    default: nextpnr-ecp5 0.11 places the DCCA itself and, depending on the placement, finds no
    fabric route into it (the ULX3S relay failed so; the pin-plan probes of ULX3S, ECPIX-5 and
    Colorlight routed).

    The parent defines the domains (:attr:`domain_names`; Amaranth 0.6 drops upward
    propagation of domains); this block drives their clocks and resets.
    """

    def __init__(self, config, clk_resource, secondary_domains=(), rst_resource=None,
                 global_reset=()):
        if len(secondary_domains) != len(config.clkos_divs):
            raise ValueError(f"secondary_domains must name {len(config.clkos_divs)} domains, "
                             f"not {list(secondary_domains)!r}")
        self.config = config
        self.clk_resource = clk_resource
        self.secondary_domains = tuple(secondary_domains)
        self.rst_resource = rst_resource
        self.global_reset = tuple(global_reset)
        self.locked = Signal()

    @property
    def domain_names(self):
        """Names of the domains this block clocks: ``sync`` then the secondary domains."""
        return ("sync", *self.secondary_domains)

    def domain_frequencies(self):
        """Return ``{domain: achieved frequency in Hz}`` of the domains this block clocks."""
        return dict(zip(self.domain_names, (self.config.f_out, *self.config.f_secondary),
                        strict=True))

    def make_domains(self):
        """Return fresh ``ClockDomain`` objects for the parent to add to its module."""
        return [ClockDomain(name) for name in self.domain_names]

    def elaborate(self, platform):
        m = Module()
        clk_io = platform.request(*self.clk_resource, dir="-")
        m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
        rst = Signal()
        if self.rst_resource is not None:
            rst_io = platform.request(*self.rst_resource, dir="-")
            m.submodules.rst_buf = rst_buf = io.Buffer("i", rst_io)
            m.d.comb += rst.eq(rst_buf.i)

        clkop = Signal()
        clkos = [Signal(name=f"clkos{i}") for i in range(len(self.secondary_domains))]
        ports = {"i_CLKI": clk_buf.i, "o_CLKOP": clkop, "i_CLKFB": clkop,
                 "i_RST": rst, "i_STDBY": 0, "i_PHASESEL0": 0, "i_PHASESEL1": 0,
                 "i_PHASEDIR": 0, "i_PHASESTEP": 0, "i_PHASELOADREG": 0, "i_PLLWAKESYNC": 0,
                 "i_ENCLKOP": 0, "o_LOCK": self.locked}
        for name, sig in zip(SECONDARY_OUTPUTS, clkos, strict=False):
            ports[f"o_{name}"] = sig
            ports[f"i_EN{name}"] = 0
        m.submodules.pll = Instance("EHXPLLL", **self.config.instance_params(), **ports)

        domains = [("sync", clkop, self.config.f_out)]
        domains += list(zip(self.secondary_domains, clkos, self.config.f_secondary,
                            strict=True))
        for name, clk, _freq in domains:
            m.d.comb += ClockSignal(name).eq(clk)
            if name not in self.global_reset:
                m.submodules[f"rst_sync_{name}"] = ResetSynchronizer(~self.locked, domain=name)
                continue
            rst_local = Signal(init=1, name=f"rst_{name}_local")
            m.submodules[f"rst_sync_{name}"] = AsyncFFSynchronizer(~self.locked, rst_local,
                                                                   o_domain=name)
            rst_global = Signal(name=f"rst_{name}_global")
            m.submodules[f"rst_dcc_{name}"] = Instance("DCCA", i_CLKI=rst_local, i_CE=1,
                                                       o_CLKO=rst_global)
            m.d.comb += ResetSignal(name).eq(rst_global)
        return m
