"""ECPIX-5 (LFE5UM5G-85F, BG554, speed 8): combkey nodes on LambdaConcept's ECPIX-5.

Clocks: the 100 MHz oscillator (K23) feeds one EHXPLLL (Lattice FPGA-TN-02200, "ECP5 and ECP5-5G
sysCLOCK PLL/DCS/DCC Usage Guide"), VCO 750 MHz: CLKOP /15 is the ``sync`` system clock
(50 MHz), a secondary output (/6) the 125 MHz ``eth`` domain of the Ethernet stack and MAC,
and, when a node uses the modulator gearing, another the edge clock of the gearing. Another
``--sys-clk-mhz`` must divide a VCO frequency that also gives 125 MHz within 100 ppm. The
reset button (AB1) resets the PLL.

Link: UART on the FT2232 second channel (``uart`` 0: rx R26, tx R24); programming through the
first channel (``openFPGALoader -b ecpix5``). Heartbeat: the green element of RGB LED 0 (R21).
Ethernet: the RTL8211 RGMII PHY (``eth_rgmii`` 0) carries the register bridge (shared with the
UART) and the relay's record stream (:mod:`combkey.boards.ethernet`, ``docs/ethernet.md``).

Pin plan (:data:`PIN_PLAN`, on the eight Pmod connectors; pins 1-4 top row, 7-10 bottom row)
---------------------------------------------------------------------------------------------
==================  ====  ========  ===============================  ===========================
node port           dir   buffer    pins                             function
==================  ====  ========  ===============================  ===========================
dac__*              o     ff        Pmod 0 pins 1-4                  SPI DAC Pmod (PmodDA3 order:
                                                                     CS, DIN, LDAC, SCLK)
adc__*              o/i   ff        Pmod 1 pins 1-4                  SPI ADC Pmod (PmodAD1 order:
                                                                     CS, D0, D1, SCLK)
beat_adc__data[12]  i     ff        Pmod 2 pins 1-4, 7-10;           parallel 12-bit ADC for the
                                    Pmod 3 pins 1-4                  OPLL beat note
beat_adc__clk/otr   o/i   ff        Pmod 3 pins 7, 8                 ADC clock, out-of-range
mod__lanes[16]      o     oddrx2f   Pmod 4 pins 1-4                  modulator lanes, 4 x 500 Mb/s
tdc__in[2]          i     comb      Pmod 5 pins 1-2                  detector inputs D0, D1 (TDC)
==================  ====  ========  ===============================  ===========================

The ECP5-5G DCU (SERDES) could drive multi-GHz patterns on the board's SMA/HDMI lanes; that is a
stretch goal and not in this plan.
"""
from amaranth_boards.ecpix5 import ECPIX585Platform as _ECPIX585

from .base import Board, PinPlanEntry

__all__ = ["ECPIX585Platform", "BOARD", "PIN_PLAN"]


class ECPIX585Platform(_ECPIX585):
    """amaranth-boards' ECPIX-5 85F with the combkey pin plan added by :meth:`Board.platform`."""


_LV = {"IO_TYPE": "LVCMOS33"}
_LV_FAST = {"IO_TYPE": "LVCMOS33", "SLEWRATE": "FAST", "DRIVE": "8"}

#: Node ports on ECPIX-5 Pmod pins (see the module docstring table).
PIN_PLAN = (
    PinPlanEntry("dac__cs_n", "1", "o", ("pmod", 0), function="SPI DAC chip select"),
    PinPlanEntry("dac__copi", "2", "o", ("pmod", 0), function="SPI DAC data"),
    PinPlanEntry("dac__ldac_n", "3", "o", ("pmod", 0), function="SPI DAC load"),
    PinPlanEntry("dac__sclk", "4", "o", ("pmod", 0), function="SPI DAC clock"),
    PinPlanEntry("adc__cs_n", "1", "o", ("pmod", 1), function="SPI ADC chip select"),
    PinPlanEntry("adc__cipo", "2 3", "i", ("pmod", 1), function="SPI ADC data, two channels"),
    PinPlanEntry("adc__sclk", "4", "o", ("pmod", 1), function="SPI ADC clock"),
    # Pmod 2 (J24 H22 E21 D18 K22 J21 H21 D22) and Pmod 3 pins 1-4 (E4 F4 E6 H4).
    PinPlanEntry("beat_adc__data", "J24 H22 E21 D18 K22 J21 H21 D22 E4 F4 E6 H4", "i",
                 function="parallel ADC D0..D11 (OPLL beat note), Pmods 2 and 3"),
    PinPlanEntry("beat_adc__clk", "7", "o", ("pmod", 3), attrs=_LV_FAST,
                 function="parallel ADC sample clock"),
    PinPlanEntry("beat_adc__otr", "8", "i", ("pmod", 3), function="parallel ADC out-of-range"),
    PinPlanEntry("mod__lanes", "1 2 3 4", "o", ("pmod", 4), buffer="oddrx2f", attrs=_LV_FAST,
                 function="modulator lanes via ODDRX2F (4 bits/lane/fast cycle)"),
    PinPlanEntry("tdc__in", "1 2", "i", ("pmod", 5), buffer="comb", attrs=_LV,
                 function="detector inputs D0, D1 to the carry-chain TDC"),
)

BOARD = Board(
    name="ecpix5-85",
    device="LFE5UM5G-85F-8BG554",
    platform_class=ECPIX585Platform,
    clk_resource=("clk100", 0),
    rst_resource=("rst", 0),
    clk_in_hz=100e6,
    default_sys_clk_hz=50e6,       # Ethernet has its own 125 MHz eth domain
    fast_clk_hz=125e6,
    uart_resource=("uart", 0),
    led_resource=("rgb_led", 0, "g"),
    loader_args=("-b", "ecpix5"),
    pin_plan=PIN_PLAN,
    notes="UART on the FT2232 channel B; Ethernet PHY reserved for the Ethernet link.",
    ethernet=("eth_rgmii", 0),
    # Node sizes for this device (modest; `combkey bench boards` searches the largest).
    # relay: channels = the 2 tdc__in pins of the plan.
    node_params={"transmitter": {"channels": 1, "lanes": 4, "modulator": 4},
                 "relay": {"lines": 2, "taps": 512, "bins": 256, "tag_depth": 512,
                           "record_depth": 512}},
)
