"""Trivium model and hardware against the published eSTREAM test vectors.

Vectors: eSTREAM ``trivium-80.80.test-vectors`` (profile H3), as mirrored in the public
avr-crypto-lib repository (``testvectors/trivium-80.80.test-vectors``).
"""
import numpy as np
import pytest

from combkey.gateware.pattern.trivium import (
    INIT_STEPS,
    Trivium,
    init_cycles,
    int_to_key,
    key_to_int,
    trivium_keystream,
    trivium_words,
    words_to_bits,
)
from combkey.gateware.stream import make_simulator

# (name, key, iv, byte offset, expected bytes)
VECTORS = [
    ("set1 v0", "80000000000000000000", "00000000000000000000", 0,
     "38EB86FF730D7A9CAF8DF13A4420540DBB7B651464C87501552041C249F29A64"
     "D2FBF515610921EBE06C8F92CECF7F8098FF20CCCC6A62B97BE8EF7454FC80F9"),
    ("set1 v0 @448", "80000000000000000000", "00000000000000000000", 448,
     "EBF14772061C210843C18CEA2D2A275AE02FCB18E5D7942455FF77524E8A4CA5"
     "1E369A847D1AEEFB9002FCD02342983CEAFA9D487CC2032B10192CD416310FA4"),
    ("set1 v9", "00400000000000000000", "00000000000000000000", 0,
     "61208D286BC1DC431171EDA5CAF79D9560B18ACEF26484417B651A47A3F7A803"),
    ("set1 v72", "00000000000000000080", "00000000000000000000", 0,
     "5D492E77F8FE62D769C6A142056BE9361FA0ADD8A54601DE615EBC04C4F8B2C1"),
    ("set2 v0", "00000000000000000000", "00000000000000000000", 0,
     "FBE0BF265859051B517A2E4E239FC97F563203161907CF2DE7A8790FA1B2E9CD"),
    ("set2 v9", "09090909090909090909", "00000000000000000000", 0,
     "AB97616E7BAF0921F424B2573BFA15BDCA01898ABBE6AB77279AB1D732ABD105"),
    ("set5 v0", "00000000000000000000", "80000000000000000000", 0,
     "F8901736640549E3BA7D42EA2D07B9F49233C18D773008BD755585B1A8CBAB86"),
    ("set5 v72", "00000000000000000000", "00000000000000000080", 0,
     "82E7FCB2193DD7CCBDFB30E4A1BC740E2756EF94676A6D4B01B1DD2F2A335BB6"),
    ("set6 v0", "0053A6F94C9FF24598EB", "0D74DB42A91077DE45AC", 0,
     "F4CD954A717F26A7D6930830C4E7CF0819F80E03F25F342C64ADC66ABA7F8A8E"),
    ("set6 v3", "0F62B5085BAE0154A7FA", "288FF65DC42B92F960C7", 0,
     "A4386C6D7624983FEA8DBE7314E5FE1F9D102004C2CEC99AC3BFBF003A66433F"),
]


def _pack(bits):
    return np.packbits(bits, bitorder="little").tobytes().hex().upper()


@pytest.mark.parametrize("name,key,iv,offset,expected", VECTORS, ids=[v[0] for v in VECTORS])
def test_model_estream_vectors(name, key, iv, offset, expected):
    nbytes = len(expected) // 2
    bits = trivium_keystream(bytes.fromhex(key), bytes.fromhex(iv), 8 * (offset + nbytes))
    assert bits.dtype == np.uint8 and set(np.unique(bits)) <= {0, 1}
    assert _pack(bits[8 * offset:]) == expected


def test_model_ordering_statement():
    """z_0..z_7 of set 1 vector 0 are the LSB-first bits of 0x38, as the docstring states."""
    bits = trivium_keystream(bytes.fromhex("80000000000000000000"), bytes(10), 8)
    assert bits.tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
    # The last byte's MSB is s1 and the first byte's LSB is s80.
    assert key_to_int(bytes.fromhex("00000000000000000080")) == 1
    assert key_to_int(bytes.fromhex("01000000000000000000")) == 1 << 79
    assert int_to_key(1 << 79) == bytes.fromhex("01000000000000000000")


def test_model_lengths_and_batch():
    key, iv = bytes.fromhex("0F62B5085BAE0154A7FA"), bytes.fromhex("288FF65DC42B92F960C7")
    full = trivium_keystream(key, iv, 1000)
    for n in (0, 1, 63, 64, 65, 999):
        np.testing.assert_array_equal(trivium_keystream(key, iv, n), full[:n])
    ivs = [key_to_int(iv), 12345, 0]
    batch = trivium_words(key_to_int(key), ivs, 16)
    np.testing.assert_array_equal(words_to_bits(batch[0], 1000), full)
    np.testing.assert_array_equal(
        words_to_bits(batch[2], 512), trivium_keystream(key, bytes(10), 512))


def test_model_bad_input_messages():
    with pytest.raises(ValueError, match="key must be 10 bytes"):
        trivium_keystream(b"123", bytes(10), 8)
    with pytest.raises(ValueError, match="iv must be 10 bytes"):
        trivium_keystream(bytes(10), "0" * 10, 8)
    with pytest.raises(ValueError, match="nbits must be a non-negative int"):
        trivium_keystream(bytes(10), bytes(10), -1)
    with pytest.raises(ValueError, match="width must be an int in 1..64"):
        Trivium(width=65)


def rtl_keystream(width, key, iv, nbits, stalls=None):
    """Run the Trivium core and return ``nbits`` keystream bits; ``stalls`` gates ``en``.

    ``en`` asks one cycle ahead: the word is taken from ``z`` in the cycle after ``en`` and
    checked again in ``z_q`` one cycle later.
    """
    dut = Trivium(width)
    sim = make_simulator(dut)
    nwords = -(-nbits // width)
    out = []
    rng = np.random.default_rng(stalls)

    async def tb(ctx):
        ctx.set(dut.key, key_to_int(key))
        ctx.set(dut.iv, key_to_int(iv))
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        cycles = 0
        while not ctx.get(dut.ready):
            await ctx.tick()
            cycles += 1
        assert cycles == dut.latency == init_cycles(width) + 1
        taken = None
        while len(out) < nwords:
            en = 1 if stalls is None else int(rng.random() < 0.7)
            ctx.set(dut.en, en)
            await ctx.tick()
            assert ctx.get(dut.ready)
            if taken is not None:
                assert ctx.get(dut.z_q) == taken
            taken = ctx.get(dut.z) if en else None
            if en:
                out.append(taken)
        ctx.set(dut.en, 0)

    sim.add_testbench(tb)
    sim.run()
    bits = [(wd >> b) & 1 for wd in out for b in range(width)]
    return np.array(bits[:nbits], dtype=np.uint8)


@pytest.mark.parametrize("width", [1, 7, 37, 64])
def test_rtl_estream_vectors(width):
    for name, key, iv, offset, expected in (VECTORS[0], VECTORS[8]):
        nbits = 8 * (offset + len(expected) // 2)
        got = rtl_keystream(width, bytes.fromhex(key), bytes.fromhex(iv), nbits)
        assert _pack(got) == expected, name


def test_rtl_stalls_and_reload():
    key, iv = bytes.fromhex("0053A6F94C9FF24598EB"), bytes.fromhex("0D74DB42A91077DE45AC")
    ref = trivium_keystream(key, iv, 2000)
    np.testing.assert_array_equal(rtl_keystream(40, key, iv, 2000, stalls=1), ref)
    assert INIT_STEPS % 40  # exercises the fixed-offset word assembly
