"""Ethernet for the nodes: RGMII MAC, ARP/IPv4/ICMP/UDP, register bridge and record stream.

* :mod:`.ddr` — ECP5 IDDRX1F / ODDRX1F / DELAYG behind simulatable wrappers.
* :mod:`.mac` — :class:`~.mac.Octet` byte streams, RGMII, MAC receive/transmit with FCS.
* :mod:`.stack` — :class:`~.stack.NetStack` (ARP, IPv4, ICMP echo, UDP ports) and its model.
* :mod:`.core` — :class:`~.core.EthernetCore`: RGMII pins to the node's byte streams and the
  record stream, with every register (``registers()``).
"""
