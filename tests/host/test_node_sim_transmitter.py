"""Whole transmitter node in pysim through ``Device`` (register names only): pattern channels
configured with :meth:`PatternConfig.register_values`, class counters against the host
regeneration of the same slots; the beat ADC capture against its stimulus."""
import numpy as np
import pytest

from combkey.device import Device, DeviceError, Link, SimLink
from combkey.gateware.node import TransmitterNode
from combkey.gateware.pattern.generator import N_CLASSES
from combkey.pattern import PatternConfig, regenerate

KEY = bytes(range(1, 11))


def run_channel(dev, link, prefix, cfg, key, cycles):
    """Configure channel ``prefix`` through its registers, run ``cycles``, stop; return
    (first slot, slots emitted, class counts)."""
    for name, value in cfg.register_values(key):
        dev.write(f"{prefix}.{name}", value)
    link.step(cycles)
    assert dev.read(f"{prefix}.status") == 0b11            # running, keyed
    # Stopping (run = 0) restarts at frame0 and keeps the counters: every slot emitted since
    # the start is counted once, so the counts cover slots first .. first + sum - 1.
    stop = [v for n, v in cfg.register_values(key, run=False) if n == "ctrl"][0]
    dev.write(f"{prefix}.ctrl", stop)
    assert dev.read(f"{prefix}.status") & 1 == 0
    counts = [dev.read(f"{prefix}.count{c}") for c in range(N_CLASSES)]
    assert counts == [dev.read(f"{prefix}.count{c}") for c in range(N_CLASSES)]   # stopped
    return cfg.frame0 * cfg.frame_len, sum(counts), counts


def host_counts(cfg, key, first, n):
    slots = regenerate(cfg, key, first, n)
    return np.bincount(slots["cls"], minlength=N_CLASSES).tolist()


def test_default_node_counts_match_regeneration():
    link = SimLink("transmitter")
    dev = Device(link)
    assert dev.read("pattern0.status") == 0
    cfg = PatternConfig(protocol="sns", p_z=0.6, eps=0.3, frame_len=64, n_q=48, n_r=16,
                        ref_phase_step=3, frame0=5, iv_tag=0x123)
    first, n, counts = run_channel(dev, link, "pattern0", cfg, KEY, 600)
    assert n > 400                      # ran at one slot per cycle after keying
    assert counts == host_counts(cfg, KEY, first, n)
    assert counts[5] > 0 and counts[1] > 0 and counts[6] == 0


class OpaqueLink(Link):
    """A link that hides its node, like a serial or UDP link to a board."""

    def __init__(self, inner):
        self.inner, self.url = inner, inner.url

    def exchange(self, request, timeout):
        return self.inner.exchange(request, timeout)

    def step(self, cycles):
        self.inner.step(cycles)


def test_two_channels_two_lanes_are_independent():
    node = TransmitterNode(channels=2, lanes=2)
    link = OpaqueLink(SimLink("transmitter", node=node))
    dev = Device(link)          # map rebuilt from the params identity register
    assert dev.regmap.map_hash() == node.regmap.map_hash()
    assert dev.read("params") == 2 | 2 << 8 | 16 << 12 | 4 << 17
    key = bytes(reversed(KEY))
    cfg = PatternConfig(protocol="mdi", p_z=0.4, p_y=0.3, p_x=0.2, p_o=0.1, lanes=2,
                        frame_len=128, n_q=128, iv_tag=7)
    first, n, counts = run_channel(dev, link, "pattern1", cfg, key, 400)
    assert n > 400 and n % 2 == 0      # two slots per cycle
    assert counts == host_counts(cfg, key, first, n)
    assert [dev.read(f"pattern0.count{c}") for c in range(N_CLASSES)] == [0] * N_CLASSES
    with pytest.raises(DeviceError, match="no register named 'pattern2.ctrl'"):
        dev.write("pattern2.ctrl", 1)


def test_beat_adc_capture_and_phase_word():
    words = [0x000, 0x7FF, 0x800, 0xFFF, 0x123, 0x9AB]
    state = {"k": 0, "otr": 0}
    node = TransmitterNode()

    async def adc(ctx):
        # An ideal ADC: a new word (and out-of-range flag on odd words) each system cycle.
        k = 0
        while True:
            ctx.set(node.beat_adc.data, words[k % len(words)])
            ctx.set(node.beat_adc.otr, k & 1)
            await ctx.tick()
            k += 1

    link = SimLink("transmitter", node=node, testbenches=[adc])
    dev = Device(link)
    dev.write("io.beat_div", 3)         # sample clock f_clk / 6: words 0, 6, 12... -> 0x000
    link.step(50)
    before = dev.read("io.otr_count")
    # Sampled words are those at the sample clock's rising edge; with a period of 6 cycles
    # and 6 words, every sample sees the same word and otr flag.
    sample = dev.read("io.beat_sample")
    assert sample in [((w ^ 0x800) - 4096 if (w ^ 0x800) >= 2048 else w ^ 0x800)
                      for w in words]
    link.step(60)
    after = dev.read("io.otr_count")
    index = [((w ^ 0x800) - 4096 if (w ^ 0x800) >= 2048 else w ^ 0x800)
             for w in words].index(sample)
    assert after - before in ((10, 11) if index % 2 else (0,))
    assert dev.read("io.beat_sample") == sample
    dev.write("io.phase_word", -1234)
    assert dev.read("io.phase_word") == -1234
    del state


@pytest.mark.parametrize("lanes", [2, 4])
def test_modulator_pins_send_the_regenerated_slots(lanes):
    """A transmitter built with its modulator output (as on boards): the ``mod.lanes`` words of
    the ``fast`` domain carry {pm_code[1:0], im_code[1:0]} of the regenerated slots in order,
    with no underflow or overflow while the generator runs."""
    from combkey.gateware.modout import modout_words

    node = TransmitterNode(lanes=lanes, modulator=True)
    assert node.fast_clk_hz == node.clk_hz * lanes / 4
    seen = []

    async def pins(ctx):
        async for _clk, _rst, active, word in ctx.tick("fast").sample(node.modout.active,
                                                                       node.mod.lanes):
            if active:
                seen.append(word)

    link = SimLink("transmitter", node=node, testbenches=[pins])
    dev = Device(link)
    assert dev.read("params") >> 21 & 7 == 4          # modulator ratio 4 (ODDRX2F)
    cfg = PatternConfig(protocol="sns", p_z=0.5, eps=0.4, lanes=lanes, frame_len=256, n_q=192,
                        n_r=64, frame0=2, iv_tag=0x55)
    dev.write("mod.enable", 1)
    for name, value in cfg.register_values(KEY):
        dev.write(f"pattern0.{name}", value)
    link.step(400)
    assert dev.read("mod.underflows") == 0 and dev.read("mod.overflows") == 0
    assert len(seen) > 50
    slots = regenerate(cfg, KEY, cfg.frame0 * cfg.frame_len, 4 * len(seen))
    codes = (slots["im_code"].astype(np.uint64) & 3) | ((slots["pm_code"].astype(np.uint64)
                                                          & 3) << 2)
    np.testing.assert_array_equal(np.array(seen, dtype=np.uint64), modout_words(codes))
    assert len(set(int(w) for w in seen)) > 4
