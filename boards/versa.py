"""Versa ECP5-5G (LFE5UM5G-45F, BG381, speed 8): combkey nodes on Lattice's Versa board.

Clocks: the 100 MHz LVDS oscillator (P3/P4) feeds one EHXPLLL (Lattice FPGA-TN-02200, "ECP5 and
ECP5-5G sysCLOCK PLL/DCS/DCC Usage Guide"): CLKOP is the ``sync`` system clock (default 50 MHz,
``--sys-clk-mhz``), CLKOS the 250 MHz edge clock of the modulator gearing when a node uses it
(``fast`` = 125 MHz). The PCIe reset button (T1) resets the PLL.

Link: UART on the FT2232H channel B (``uart`` 0: rx C11, tx A11; set the board's UART jumpers);
JTAG on channel A (``openFPGALoader -c ft2232``; the chain also holds the ispCLOCK part, which
openFPGALoader skips by IDCODE). Heartbeat: LED 0 (E16).
Ethernet: two Marvell 88E1512 RGMII PHYs (``eth_rgmii`` 0/1, 2.5 V I/O in banks 3 and 2); PHY 0
carries the register bridge (shared with the UART) and the relay's record stream
(:mod:`combkey.boards.ethernet`, ``docs/ethernet.md``) in a 125 MHz ``eth`` domain, a further
output of the PLL (VCO 750 MHz: CLKOP /15 = 50 MHz, /6 = 125 MHz; a transmitter's ``fast``
clock for its ODDRX1F lanes, 50 MHz at the default parameters, is a third output, /15). The
PHY delays both RXC and TXC as the board configures it (:data:`PHY`); reset U17 is held 10 ms
after configuration, MDIO (T18/U18) released. No pin of the plan is in bank 3.

Pin plan (:data:`PIN_PLAN`, on expansion headers X3 = ``expcon`` 1 and X4 = ``expcon`` 2)
-----------------------------------------------------------------------------------------
==================  ====  ========  ==========================  ================================
node port           dir   buffer    pins                        function
==================  ====  ========  ==========================  ================================
dac__*              o     ff        X3 pins 4-7                 SPI DAC (CS, DIN, LDAC, SCLK)
adc__*              o/i   ff        X3 pins 8-11                SPI ADC (CS, D0, D1, SCLK)
beat_adc__data[12]  i     ff        X4 pins 3-14                parallel 12-bit ADC (OPLL beat)
beat_adc__clk/otr   o/i   ff        X4 pins 15, 16              ADC clock, out-of-range
mod__lanes[8]       o     ddr       X4 pins 21, 23, 25, 27      modulator lanes, 4 x 250 Mb/s
tdc__in[2]          i     comb      X4 pins 28, 29              detector inputs D0, D1 (TDC)
==================  ====  ========  ==========================  ================================

Every expansion-header pin sits in the top banks 0/1, which have no ODDRX2F gearing: the
modulator lanes use ODDRX1F (2 bits per lane per ``fast`` cycle), so a transmitter on this board
has half the lane rate of the other boards. The ECP5-5G DCU lanes on the SMA connectors could
carry multi-GHz patterns: a stretch goal, not in this plan. Check the VCCIO of banks 0/1
(3.3 V assumed) before wiring converters.
"""
from amaranth_boards.versa_ecp5_5g import VersaECP55GPlatform

from .base import Board, PinPlanEntry
from .ethernet import RGMIIPhy

__all__ = ["Versa5GPlatform", "BOARD", "PIN_PLAN", "PHY"]


class Versa5GPlatform(VersaECP55GPlatform):
    """amaranth-boards' Versa ECP5-5G with the combkey pin plan added by :meth:`Board.platform`."""


_X3 = ("expcon", 1)
_X4 = ("expcon", 2)
_LV = {"IO_TYPE": "LVCMOS33"}
_LV_FAST = {"IO_TYPE": "LVCMOS33", "SLEWRATE": "FAST", "DRIVE": "8"}

#: Node ports on Versa expansion-header pins (see the module docstring table).
PIN_PLAN = (
    PinPlanEntry("dac__cs_n", "4", "o", _X3, function="SPI DAC chip select"),
    PinPlanEntry("dac__copi", "5", "o", _X3, function="SPI DAC data"),
    PinPlanEntry("dac__ldac_n", "6", "o", _X3, function="SPI DAC load"),
    PinPlanEntry("dac__sclk", "7", "o", _X3, function="SPI DAC clock"),
    PinPlanEntry("adc__cs_n", "8", "o", _X3, function="SPI ADC chip select"),
    PinPlanEntry("adc__cipo", "9 10", "i", _X3, function="SPI ADC data, two channels"),
    PinPlanEntry("adc__sclk", "11", "o", _X3, function="SPI ADC clock"),
    PinPlanEntry("beat_adc__data", "3 4 5 6 7 8 9 10 11 12 13 14", "i", _X4,
                 function="parallel ADC D0..D11 (OPLL beat note)"),
    PinPlanEntry("beat_adc__clk", "15", "o", _X4, attrs=_LV_FAST,
                 function="parallel ADC sample clock"),
    PinPlanEntry("beat_adc__otr", "16", "i", _X4, function="parallel ADC out-of-range"),
    PinPlanEntry("mod__lanes", "21 23 25 27", "o", _X4, buffer="ddr", attrs=_LV_FAST,
                 function="modulator lanes via ODDRX1F (2 bits/lane/fast cycle; top bank)"),
    PinPlanEntry("tdc__in", "28 29", "i", _X4, buffer="comb", attrs=_LV,
                 function="detector inputs D0, D1 to the carry-chain TDC"),
)

#: Marvell 88E1512 on ``eth_rgmii`` 0: both clocks delayed by the PHY (LiteX-Boards' target
#: "lattice_versa_ecp5.py" uses tx_delay=0, rx_delay=0; provenance in
#: :mod:`combkey.boards.ethernet`, "PHYs").
PHY = RGMIIPhy(("eth_rgmii", 0), part="Marvell 88E1512", tx_delay_ps=0, rx_delay_ps=0)

BOARD = Board(
    name="versa-ecp5-5g",
    device="LFE5UM5G-45F-8BG381",
    platform_class=Versa5GPlatform,
    clk_resource=("clk100", 0),
    rst_resource=("rst", 0),
    clk_in_hz=100e6,
    default_sys_clk_hz=50e6,
    fast_clk_hz=125e6,
    uart_resource=("uart", 0),
    led_resource=("led", 0),
    loader_args=("-c", "ft2232"),
    pin_plan=PIN_PLAN,
    notes="UART on FT2232H channel B; check bank VCCIO before wiring converters. Ethernet on "
          "88E1512 PHY 0 (eth_rgmii 0, LVCMOS25 in bank 3; reset U17 held 10 ms).",
    ethernet=PHY,
    # Node sizes for this device (modest; `combkey bench boards` searches the largest).
    # relay: channels = the 2 tdc__in pins of the plan.
    node_params={"transmitter": {"channels": 1, "lanes": 2, "modulator": 2},
                 "relay": {"lines": 2, "taps": 512, "bins": 256, "tag_depth": 512,
                           "record_depth": 512}},
)
