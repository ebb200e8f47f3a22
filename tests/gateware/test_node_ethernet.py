# amaranth: UnusedElaboratable=no
"""A node built with ``ethernet=True``: the ``net`` block joins the map last, ``params`` bit 31
says so, and the host rebuilds the very same map from ``params`` (Device over sim://)."""
import pytest
from amaranth.hdl import Fragment

from combkey.device import Device, DeviceError, Link, SimLink, open_link
from combkey.gateware.net.core import EthernetCore
from combkey.gateware.net.stack import DEFAULT_IP, REG_PORT
from combkey.gateware.node import (
    ETHERNET_FIELD,
    LINK_MUX_REGS,
    PARAMS_ADDR,
    RelayNode,
    TransmitterNode,
    node_regmap,
    node_regmap_from_params,
)


def _elaborated(component):
    Fragment.get(component, None)
    return component


NET_REGS = [r.name for r in _elaborated(EthernetCore()).registers()]
MUX_REGS = [f"link.{r.name}" for r in LINK_MUX_REGS]

NODES = [("relay", RelayNode, dict(channels=2)),
         ("relay", RelayNode, dict(channels=3)),
         ("transmitter", TransmitterNode, dict(channels=2, lanes=2, prob_bits=18))]


@pytest.mark.parametrize("kind,cls,params", NODES)
def test_ethernet_map_is_rebuilt_from_params(kind, cls, params):
    eth = _elaborated(cls(ethernet=True, **params))
    plain = _elaborated(cls(**params))
    word = eth.params_word()
    assert word == plain.params_word() | (1 << ETHERNET_FIELD[1])
    assert eth.map_params["ethernet"] == 1 and plain.map_params["ethernet"] == 0
    rebuilt = node_regmap_from_params(kind, word)
    assert rebuilt.map_hash() == eth.regmap.map_hash()
    assert [(a, r.name) for a, r in rebuilt.all_resources()] == \
        [(a, r.name) for a, r in eth.regmap.all_resources()]
    # Without the bit the host rebuilds the plain map, whose hash differs.
    assert node_regmap_from_params(kind, plain.params_word()).map_hash() == \
        plain.regmap.map_hash() != eth.regmap.map_hash()
    # The link mux counters and the net block come after every other block: the plain map is a
    # prefix, and only the Ethernet node has the mux counters (and the members they read).
    p = [(a, r.name) for a, r in plain.regmap.all_resources()]
    e = [(a, r.name) for a, r in eth.regmap.all_resources()]
    assert e[:len(p)] == p
    assert [n for _, n in e[len(p):]] == MUX_REGS + [f"net.{r}" for r in NET_REGS]
    assert not any(n.startswith("link.mux_") for _, n in p)
    assert {f"link_{r.name}" for r in LINK_MUX_REGS} <= set(eth.signature.members)
    assert not any(n.startswith("link_mux_") for n in plain.signature.members)


def test_ethernet_params_do_not_change_the_map():
    a = node_regmap("relay", ethernet=True)
    b = _elaborated(RelayNode(ethernet=True, ethernet_params=dict(domain="eth",
                                                                  tx_clk_mode="delay")))
    assert a.map_hash() == b.regmap.map_hash()


def test_ethernet_argument_checked():
    with pytest.raises(ValueError, match=r"ethernet must be True or False, not 'yes'"):
        RelayNode(ethernet="yes")
    with pytest.raises(ValueError, match=r"ethernet_params needs ethernet=True, "
                                         r"not ethernet=False"):
        RelayNode(ethernet_params={})


class _NoNodeLink(Link):
    """A sim link seen without its node, so that Device must rebuild the map from params."""

    def __init__(self, inner):
        self.inner = inner
        self.url = inner.url

    def exchange(self, request, timeout):
        return self.inner.exchange(request, timeout)


@pytest.mark.parametrize("kind", ["relay", "transmitter"])
def test_device_over_sim_rebuilds_ethernet_map(kind):
    node = node_class_of(kind)(clk_hz=10_000_000, ethernet=True)
    dev = Device(_NoNodeLink(SimLink(kind, node=node)))
    assert dev.regmap.map_hash() == node.regmap.map_hash()
    assert dev.read("params") >> 31 == 1
    assert dev.read("net.ip") == DEFAULT_IP and dev.read("net.reg_port") == REG_PORT
    dev.write("net.reg_port", 7100)
    assert dev.read("net.reg_port") == 7100
    assert dev.read("net.rx_frames") == 0
    # The mux counters are in the map the host rebuilt (nothing drives them without a board).
    assert [dev.read(n) for n in MUX_REGS] == [0, 0, 0]
    assert dev.stats["timeouts"] == 0


def test_sim_url_ethernet_option():
    link = open_link("sim://relay?ethernet=1&clk_hz=10000000")
    assert link.node.ethernet and link.node.params_word() >> 31 == 1
    dev = Device(link)
    assert dev.read_raw("params") == link.node.params_word()
    assert dev.regmap.address("params") == PARAMS_ADDR
    with pytest.raises(DeviceError, match=r"URL option ethernet must be 0 or 1, not 2"):
        open_link("sim://relay?ethernet=2")


def node_class_of(kind):
    return {"relay": RelayNode, "transmitter": TransmitterNode}[kind]
