"""combkey.sim: physics models of the optics and co-simulation of gateware with plants."""
