"""combkey: control-and-key stack for microcomb-driven WDM twin-field and MDI QKD networks.

Import map (one distribution, one import name):

* ``combkey`` (folder ``host/``): CLI, device links, sessions, key-rate engine, distillation.
* ``combkey.gateware`` (``gateware/``): Amaranth components with their bit-exact numpy models.
* ``combkey.sim`` (``sim/``): physics models and co-simulation.
* ``combkey.boards`` (``boards/``): ECP5 board tops, build and flash.
"""
from ._version import __version__

__all__ = ["__version__"]
