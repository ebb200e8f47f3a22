"""ULX3S (LFE5U-85F, BG381, speed 6): combkey nodes on Radiona's ULX3S.

Clocks: the 25 MHz oscillator (G2) feeds one EHXPLLL (Lattice FPGA-TN-02200, "ECP5 and ECP5-5G
sysCLOCK PLL/DCS/DCC Usage Guide"; dividers computed by
:func:`combkey.boards.ecp5_pll.ecp5_pll_config`): CLKOP is the ``sync`` system clock (default
50 MHz, ``--sys-clk-mhz``), CLKOS the 250 MHz edge clock of the modulator gearing when a node
uses it (``fast`` = 125 MHz).

Link: the UART on the FTDI FT231X pins (``uart`` 0: rx M1, tx L4), 115200 baud by default; the
same USB port programs the FPGA (``openFPGALoader -b ulx3s``). Heartbeat: LED 0 (B2).

Pin plan (:data:`PIN_PLAN`; header J1 = ``gpio`` pairs 0..13 top-bank, J2 = pairs 14..27)
------------------------------------------------------------------------------------------
==================  ====  ========  ========================  ===================================
node port           dir   buffer    header pins               function
==================  ====  ========  ========================  ===================================
dac__cs_n/copi/     o     ff        GP0..GP3                  SPI DAC Pmod (16-bit, AD5541A class,
sclk/ldac_n                                                   PmodDA3): laser current / heater
adc__cs_n/sclk      o     ff        GN0, GN3                  SPI ADC Pmod (dual 12-bit AD7476A
adc__cipo[2]        i     ff        GN1, GN2                  class, PmodAD1): slow monitors
beat_adc__data[12]  i     ff        GP/GN21..26               parallel 12-bit ADC (AD9226 class,
beat_adc__clk       o     ff        GP27                      65 MS/s) for the OPLL beat note
beat_adc__otr       i     ff        GN27
mod__lanes[16]      o     oddrx2f   GP14..GP17 (right bank)   modulator drivers, 4 lanes x 4 bits
                                                              per ``fast`` cycle = 500 Mbit/s/lane
tdc__in[2]          i     comb      GP18, GP19 (right bank)   detector discriminator outputs for
                                                              the carry-chain TDC (D0, D1)
==================  ====  ========  ========================  ===================================

The on-board MAX11125 SPI ADC (``adc`` resource) is left to the board for now. ODDRX2F gearing
exists only in the left and right I/O banks, hence the J2 pins for ``mod__lanes``.
"""
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .base import Board, PinPlanEntry

__all__ = ["ULX3S85FPlatform", "BOARD", "PIN_PLAN"]


class ULX3S85FPlatform(ULX3S_85F_Platform):
    """amaranth-boards' ULX3S 85F with the combkey pin plan added by :meth:`Board.platform`."""


_G = ("gpio", 0)
_LV = {"IO_TYPE": "LVCMOS33"}
_LV_FAST = {"IO_TYPE": "LVCMOS33", "SLEWRATE": "FAST", "DRIVE": "8"}

#: Node ports on ULX3S header pins (see the module docstring table).
PIN_PLAN = (
    PinPlanEntry("dac__cs_n", "0+", "o", _G, function="SPI DAC Pmod chip select (active low)"),
    PinPlanEntry("dac__copi", "1+", "o", _G, function="SPI DAC Pmod data"),
    PinPlanEntry("dac__sclk", "2+", "o", _G, function="SPI DAC Pmod clock"),
    PinPlanEntry("dac__ldac_n", "3+", "o", _G, function="SPI DAC Pmod load (active low)"),
    PinPlanEntry("adc__cs_n", "0-", "o", _G, function="SPI ADC Pmod chip select"),
    PinPlanEntry("adc__cipo", "1- 2-", "i", _G, function="SPI ADC Pmod data, two channels"),
    PinPlanEntry("adc__sclk", "3-", "o", _G, function="SPI ADC Pmod clock"),
    PinPlanEntry("beat_adc__data", "21+ 21- 22+ 22- 23+ 23- 24+ 24- 25+ 25- 26+ 26-", "i", _G,
                 function="parallel ADC D0..D11 (OPLL beat note)"),
    PinPlanEntry("beat_adc__clk", "27+", "o", _G, attrs=_LV_FAST,
                 function="parallel ADC sample clock"),
    PinPlanEntry("beat_adc__otr", "27-", "i", _G, function="parallel ADC out-of-range"),
    PinPlanEntry("mod__lanes", "14+ 15+ 16+ 17+", "o", _G, buffer="oddrx2f", attrs=_LV_FAST,
                 function="modulator lanes via ODDRX2F (4 bits/lane/fast cycle)"),
    PinPlanEntry("tdc__in", "18+ 19+", "i", _G, buffer="comb", attrs=_LV,
                 function="detector inputs D0, D1 to the carry-chain TDC"),
)

BOARD = Board(
    name="ulx3s-85f",
    device="LFE5U-85F-6BG381",
    platform_class=ULX3S85FPlatform,
    clk_resource=("clk25", 0),
    clk_in_hz=25e6,
    default_sys_clk_hz=50e6,
    fast_clk_hz=125e6,
    uart_resource=("uart", 0),
    led_resource=("led", 0),
    loader_args=("-b", "ulx3s"),
    pin_plan=PIN_PLAN,
    notes="UART and programming share the FT231X USB port (US1).",
    # Node sizes for this device (modest; `combkey bench boards` searches the largest).
    # relay: channels = the 2 tdc__in pins of the plan.
    node_params={"transmitter": {"channels": 1, "lanes": 4, "modulator": 4},
                 "relay": {"lines": 2, "taps": 512, "bins": 256, "tag_depth": 512,
                           "record_depth": 512}},
)
