"""Colorlight 5A-75B v7.0 (LFE5U-25F, BG256, speed 6): combkey nodes on the LED-panel card.

Clocks: the 25 MHz oscillator (P6) feeds one EHXPLLL (Lattice FPGA-TN-02200, "ECP5 and ECP5-5G
sysCLOCK PLL/DCS/DCC Usage Guide"): CLKOP is the ``sync`` system clock (default 50 MHz,
``--sys-clk-mhz``), CLKOS the 250 MHz edge clock of the modulator gearing when a node uses it
(``fast`` = 125 MHz).

Link: the card has no USB. amaranth-boards places the UART on J19: tx on the status LED net
(P11, so the LED flickers with traffic) and rx on the button net (M13); wire a 3.3 V USB-UART
there. Programming needs an external JTAG cable on J27 (``openFPGALoader -b colorlight``).
Heartbeat: HUB75 connector J1 pin 1 (F3), since the only LED carries UART tx.
Ethernet: two Broadcom B50612D RGMII PHYs (``eth_rgmii`` 0/1). PHY 0 is described (:data:`PHY`)
but **off for both nodes** (``PHY.nodes = ()``): neither node fits the LFE5U-25F with the stack
(yosys ``synth_ecp5``, LUT4 counting a CCU2C as two, of 24,288; 2026-11-24):

===========  ====================  ====================  ==========================
node         without Ethernet      with Ethernet         FF with Ethernet
===========  ====================  ====================  ==========================
transmitter  14,493 LUT4 (59.7 %)  18,948 LUT4 (78.0 %)  15,673 (64.5 %), 7 DP16KD
relay        17,656 LUT4 (72.7 %)  22,435 LUT4 (92.4 %)  18,732 (77.1 %), 16 DP16KD
===========  ====================  ====================  ==========================

The relay cannot fit. The transmitter is above the 70 % that ``combkey bench boards --fit``
allows for routing (:mod:`combkey.boards.fit`), and its ``eth`` domain would need 125 MHz on
this speed-6 part, where the stack alone reached 106.4 MHz out of context (LFE5U-85F speed 6,
``docs/ethernet.md``). Switching it on is one line, ``nodes=("transmitter",)``: the top then
elaborates with the 125 MHz ``eth`` domain as a further output of the same PLL (VCO 750 MHz:
CLKOP /15 = 50 MHz, /6 = 125 MHz, /15 = the 50 MHz modulator edge clock), the PHY delaying TXC
itself and the FPGA RXD/RX_CTL by 2 ns; a place-and-route build must then show it fits and
meets 125 MHz. Both PHYs share one reset (P5, held 10 ms after configuration) and one MDIO bus
(P3/T2, released: the PHY runs on its straps). No pin of the plan is on a PHY 0 pin (bank 6,
LVCMOS33 like the plan's bank-6 ports).

Pin plan (:data:`PIN_PLAN`, on the HUB75 connectors J1-J8; pins 8-15 of every connector are
one shared address bus and are not used)
-----------------------------------------------------------------------------------------
==================  ====  ========  =====================  =====================================
node port           dir   buffer    pins                   function
==================  ====  ========  =====================  =====================================
dac__*              o     ff        J2 pins 1, 2, 3, 5     SPI DAC (CS, DIN, SCLK, LDAC)
adc__*              o/i   ff        J3 pins 1, 2, 3, 5     SPI ADC (CS, SCLK, D0, D1)
beat_adc__data[12]  i     ff        J4 1-2, J5 1-3, 5-7,   parallel 12-bit ADC (OPLL beat note)
                                    J6 3, 5-7
beat_adc__clk/otr   o/i   ff        J6 pins 1, 2           ADC clock, out-of-range
mod__lanes[16]      o     oddrx2f   J7 pins 1, 2, 3, 5     modulator lanes, 4 x 500 Mb/s
tdc__in[2]          i     comb      J8 pins 1, 2           detector inputs D0, D1 (TDC)
==================  ====  ========  =====================  =====================================

The HUB75 pins pass through 74HC245 buffers fixed as outputs on v7.0: every *input* of this
plan (ADC data, beat ADC, detector inputs) needs its buffer bypassed (the usual board
modification); outputs work as shipped.
"""
from amaranth.build import Attrs, Pins, Resource
from amaranth_boards.colorlight_5a75b_r7_0 import Colorlight_5A75B_R70Platform

from .base import Board, PinPlanEntry
from .ethernet import RGMIIPhy

__all__ = ["Colorlight5A75BPlatform", "BOARD", "PIN_PLAN", "PHY"]


class Colorlight5A75BPlatform(Colorlight_5A75B_R70Platform):
    """amaranth-boards' Colorlight 5A-75B v7.0 with the combkey pin plan added."""


_LV = {"IO_TYPE": "LVCMOS33"}
_LV_FAST = {"IO_TYPE": "LVCMOS33", "SLEWRATE": "FAST", "DRIVE": "8"}

#: Node ports on Colorlight HUB75 pins (see the module docstring table).
PIN_PLAN = (
    PinPlanEntry("dac__cs_n", "1", "o", ("j", 2), function="SPI DAC chip select"),
    PinPlanEntry("dac__copi", "2", "o", ("j", 2), function="SPI DAC data"),
    PinPlanEntry("dac__sclk", "3", "o", ("j", 2), function="SPI DAC clock"),
    PinPlanEntry("dac__ldac_n", "5", "o", ("j", 2), function="SPI DAC load"),
    PinPlanEntry("adc__cs_n", "1", "o", ("j", 3), function="SPI ADC chip select"),
    PinPlanEntry("adc__sclk", "2", "o", ("j", 3), function="SPI ADC clock"),
    PinPlanEntry("adc__cipo", "3 5", "i", ("j", 3),
                 function="SPI ADC data, two channels (input: bypass the 74HC245)"),
    # J4 pins 1-2 (P4 R2), J5 pins 1-3, 5-7 (M11 N11 P12 K15 N12 L16), J6 pins 3, 5-7
    # (J16 J12 H15 G16). J4 pins 3, 5-7 are configuration-bank (8) balls, which the
    # yowasp ecppack aborted on, so they stay unused.
    PinPlanEntry("beat_adc__data", "P4 R2 M11 N11 P12 K15 N12 L16 J16 J12 H15 G16", "i",
                 function="parallel ADC D0..D11 (OPLL beat note), J4, J5, J6"),
    PinPlanEntry("beat_adc__clk", "1", "o", ("j", 6), attrs=_LV_FAST,
                 function="parallel ADC sample clock"),
    PinPlanEntry("beat_adc__otr", "2", "i", ("j", 6), function="parallel ADC out-of-range"),
    PinPlanEntry("mod__lanes", "1 2 3 5", "o", ("j", 7), buffer="oddrx2f", attrs=_LV_FAST,
                 function="modulator lanes via ODDRX2F (4 bits/lane/fast cycle)"),
    PinPlanEntry("tdc__in", "1 2", "i", ("j", 8), buffer="comb", attrs=_LV,
                 function="detector inputs D0, D1 to the carry-chain TDC"),
)

#: Broadcom B50612D on ``eth_rgmii`` 0: TXC delayed by the PHY (LiteX-Boards' target
#: "colorlight_5a_75x.py" uses tx_delay=0 and LiteEth's default 2 ns RX data delay; provenance in
#: :mod:`combkey.boards.ethernet`, "PHYs"). Off for both nodes: neither fits with the stack
#: (transmitter 78.0 %, relay 92.4 % of the LUT4 by synthesis; module docstring).
PHY = RGMIIPhy(("eth_rgmii", 0), part="Broadcom B50612D", tx_delay_ps=0, rx_delay_ps=2000,
               nodes=())

BOARD = Board(
    name="colorlight-5a75b",
    device="LFE5U-25F-6BG256",
    platform_class=Colorlight5A75BPlatform,
    clk_resource=("clk25", 0),
    clk_in_hz=25e6,
    default_sys_clk_hz=50e6,
    fast_clk_hz=125e6,
    uart_resource=("uart", 0),
    led_resource=("combkey_heartbeat", 0),
    extra_resources=(Resource("combkey_heartbeat", 0, Pins("1", dir="o", conn=("j", 1)),
                              Attrs(IO_TYPE="LVCMOS33")),),
    loader_args=("-b", "colorlight"),
    pin_plan=PIN_PLAN,
    notes="UART on J19 (tx = LED net P11, rx = button net M13); heartbeat on J1 pin 1; "
          "inputs need the HUB75 74HC245 buffers bypassed. Ethernet (B50612D PHY 0, eth_rgmii 0, "
          "bank 6; reset P5, shared with PHY 1) is off: with the stack the transmitter needs "
          "78.0 % and the relay 92.4 % of the LUT4 (synthesis), see colorlight.py.",
    ethernet=PHY,
    # Node sizes for this device (modest; `combkey bench boards` searches the largest).
    # relay: channels = the 2 tdc__in pins of the plan.
    node_params={"transmitter": {"channels": 1, "lanes": 2, "modulator": 4},
                 "relay": {"lines": 1, "taps": 512, "bins": 128, "tag_depth": 256,
                           "record_depth": 256}},
)
