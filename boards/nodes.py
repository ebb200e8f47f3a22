"""Node kinds that a board can carry, and how to build them for a board.

``NODE_KINDS`` maps the command-line node name to ``"module:class"`` of its top in
``combkey.gateware.node``. :func:`node_factories` returns ``(node_factory, link_factory)``: the
node class (called with ``clk_hz=`` and the board's per-kind parameters) and
``combkey.gateware.uart.UARTLink``.
"""
import functools
import importlib

__all__ = ["NODE_KINDS", "node_factories"]

#: command-line node name -> "module:class" of the node top.
NODE_KINDS = {
    "transmitter": "combkey.gateware.node:TransmitterNode",
    "relay": "combkey.gateware.node:RelayNode",
}


def node_factories(kind, params=None):
    """Return ``(node_factory, link_factory)`` for node ``kind``.

    Raises
    ------
    ValueError
        When ``kind`` is not one of :data:`NODE_KINDS`.
    """
    if kind not in NODE_KINDS:
        raise ValueError(f"node must be one of {', '.join(sorted(NODE_KINDS))}, not {kind!r}")
    module, attr = NODE_KINDS[kind].split(":")
    node_cls = getattr(importlib.import_module(module), attr)
    from combkey.gateware.uart import UARTLink
    factory = functools.partial(node_cls, **(params or {}))
    return factory, UARTLink
