"""combkey.gateware: Amaranth 0.5 components, each beside its bit-exact numpy model.

Gateware imports only amaranth and numpy: it knows nothing of the host or the simulator.
"""
