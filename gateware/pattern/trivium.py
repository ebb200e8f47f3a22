"""Trivium keystream generator (ISO/IEC 29192-3, eSTREAM portfolio), W bits per cycle.

Trivium is the 80-bit-key, 80-bit-IV stream cipher of C. De Canniere and B. Preneel
("Trivium Specifications", eSTREAM, ECRYPT Stream Cipher Project, 2005; standardised in
ISO/IEC 29192-3:2012). Its state is 288 bits in three shift registers A (s1..s93),
B (s94..s177) and C (s178..s288); every step shifts one new bit into each register and
outputs one keystream bit. Initialisation loads key and IV and runs 4 x 288 = 1152 steps
without output.

Byte and bit ordering (the eSTREAM test-vector convention)
-----------------------------------------------------------
Key and IV are given as the 10-byte strings printed in the eSTREAM vector files
(``trivium-80.80.test-vectors``, profile H3, e.g. "Set 1, vector# 0: key = 8000...00").
The specification's state bit ``s(n+1)`` (n = 0..79) is bit ``7 - n % 8`` (MSB = 7) of byte
``9 - n // 8``: the *last* byte's most significant bit is ``s1`` and the first byte's least
significant bit is ``s80``:

* ``s1..s80   = K`` as above, ``s81..s93 = 0``;
* ``s94..s173 = IV`` in the same way, ``s174..s177 = 0``;
* ``s178..s285 = 0``, ``s286 = s287 = s288 = 1``.

:func:`key_to_int` turns such a string into the 80-bit integer with ``s(n+1)`` at bit ``n``
(reverse the bits of each byte, then read big endian); this integer is what the ``key`` and
``iv`` ports and the ``key_lo``/``key_hi`` registers carry. The keystream bit ``z_i``
(i = 0, 1, ...) is bit ``i % 8`` (LSB first) of output byte ``i // 8``, so the vector
``stream[0..63] = 38EB86FF...`` means ``z_0..z_7 = 0,0,0,1,1,1,0,0``. The tests check this
against eSTREAM sets 1, 2, 5 and 6 (vectors quoted from the public eSTREAM file as mirrored in
the avr-crypto-lib repository, ``testvectors/trivium-80.80.test-vectors``): the key = 0 vector
fixes the output order, sets 1 and 5 the key and IV orders independently.

Hardware: :class:`Trivium`
--------------------------
Parameters: ``width`` W (1..64): keystream bits per cycle. Because every feedback tap lies at
least 66 steps back, W steps unroll into one level of XOR/AND logic on the old state.

Members
~~~~~~~
* ``key: In(80)``, ``iv: In(80)``: little-endian integers as above; sampled on ``load``.
* ``load: In(1)``: load key/IV into the state and start initialisation (one-cycle pulse).
* ``en: In(1)``: consume a keystream word in the *next* cycle: ``en`` high in cycle t (with
  ``ready`` high in t + 1) consumes the word ``z`` shows in cycle t + 1, and ``z`` moves to the
  following word in t + 2. Held high, one word per cycle. ``en`` is ignored while
  initialising; it may be raised in the cycle before ``ready`` rises.
* ``ready: Out(1)``: initialisation is complete and ``z`` holds keystream (a flip-flop).
* ``z: Out(W)``: the current keystream word; bit ``b`` is keystream bit ``i*W + b`` of word i.
* ``z_q: Out(W)``: ``z`` one cycle later (a register), for a consumer that takes the word
  consumed in cycle t at t + 1.

Latency: ``ready`` rises ``latency = ceil(1152 / W) + 1`` cycles after ``load`` (``ready`` is low
from the cycle after ``load``). The state has no output buffer: it holds the current word and
advances on a flip-flop enable computed from ``en`` one cycle ahead, so no gate sits between
``en`` and the 288-bit state enable and no read pointer between the state and ``z``. When 1152
is not a multiple of W the word is assembled with a fixed offset from the previous and the
current raw step word, so no barrel shifter is needed.

Model
-----
:func:`trivium_keystream` (one key/IV) and :func:`trivium_words` (many IVs at once, vectorised
over instances with numpy, 64 steps per word) compute the same keystream.
"""
import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Trivium", "trivium_keystream", "trivium_words", "key_to_int", "int_to_key",
           "words_to_bits", "INIT_STEPS", "init_cycles"]

#: Initialisation steps without output (4 full rotations of the 288-bit state).
INIT_STEPS = 1152

# Feedback taps as lags d (bit x_{n-d} of register x feeds step n); see _step_bits.
_LA, _LB, _LC = 93, 84, 111


def init_cycles(width):
    """Cycles from ``load`` to ``ready`` for a W-bit-per-cycle core."""
    return -(-INIT_STEPS // width)


def key_to_int(value, name="key"):
    """Return the 80-bit state integer of a 10-byte key or IV (eSTREAM byte string).

    Bit ``n`` of the result is state bit ``s(n+1)`` of the register the value loads into.
    """
    if not isinstance(value, (bytes, bytearray)) or len(value) != 10:
        raise ValueError(f"{name} must be 10 bytes, not {value!r}")
    return int.from_bytes(bytes(_REV8[x] for x in value), "big")


def int_to_key(value):
    """Inverse of :func:`key_to_int`: the 10-byte eSTREAM string of an 80-bit state integer."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 80:
        raise ValueError(f"value must be an int in [0, 2**80), not {value!r}")
    return bytes(_REV8[x] for x in value.to_bytes(10, "big"))


_REV8 = bytes(int(f"{x:08b}"[::-1], 2) for x in range(256))


# ------------------------------------------------------------------------------------------
# numpy model, word parallel
# ------------------------------------------------------------------------------------------
# Sequences a_n, b_n, c_n are the bits shifted into A, B, C at step n (n >= 1); the loaded
# state is a_{1-k} = s_k etc. One word holds 64 consecutive n; bit j of word m is n = 64m+1+j.
# Step n uses x_{n-d} with 66 <= d <= 111, i.e. only the two previous words:
#   x_{n-d} word = (W1 << (d-64)) | (W2 >> (128-d)).

_U64 = np.uint64


def _lag(w1, w2, d):
    return (w1 << _U64(d - 64)) | (w2 >> _U64(128 - d))


def _hist_words(lo, hi, length):
    """History words for a register whose x_{1-k} = bit (k-1) of (hi:lo), k = 1..length."""
    w1 = np.zeros_like(lo)
    w2 = np.zeros_like(lo)
    for k in range(1, length + 1):
        b = (lo >> _U64(k - 1)) & _U64(1) if k <= 64 else (hi >> _U64(k - 65)) & _U64(1)
        n = 1 - k
        if n >= -63:
            w1 |= b << _U64(n + 63)
        else:
            w2 |= b << _U64(n + 127)
    return w1, w2


def trivium_words(key_int, iv_ints, nwords, skip_init=True):
    """Return keystream words for one key and many IVs.

    Parameters
    ----------
    key_int : int
        80-bit little-endian key integer (:func:`key_to_int`).
    iv_ints : sequence of int
        80-bit little-endian IV integers, one per instance.
    nwords : int
        64-bit words of keystream to return per instance.

    Returns
    -------
    np.ndarray of uint64, shape ``(len(iv_ints), nwords)``: bit ``b`` of word ``w`` is keystream
    bit ``64 w + b``.
    """
    iv_ints = [int(v) for v in iv_ints]
    g = len(iv_ints)
    mask64 = (1 << 64) - 1
    klo = np.full(g, key_int & mask64, dtype=_U64)
    khi = np.full(g, key_int >> 64, dtype=_U64)
    vlo = np.array([v & mask64 for v in iv_ints], dtype=_U64)
    vhi = np.array([v >> 64 for v in iv_ints], dtype=_U64)
    a1, a2 = _hist_words(klo, khi, 80)
    b1, b2 = _hist_words(vlo, vhi, 80)
    zero = np.zeros(g, dtype=_U64)
    # c_{1-k} = 1 for k = 109, 110, 111 -> n = -108..-110 (all in W2: bits 19, 18, 17).
    c1, c2 = zero.copy(), np.full(g, (1 << 19) | (1 << 18) | (1 << 17), dtype=_U64)
    out = np.empty((g, nwords), dtype=_U64)
    skip = INIT_STEPS // 64 if skip_init else 0
    with np.errstate(over="ignore"):
        for m in range(skip + nwords):
            a66, a93 = _lag(a1, a2, 66), _lag(a1, a2, 93)
            b69, b84 = _lag(b1, b2, 69), _lag(b1, b2, 84)
            c66, c111 = _lag(c1, c2, 66), _lag(c1, c2, 111)
            t1 = a66 ^ a93
            t2 = b69 ^ b84
            t3 = c66 ^ c111
            if m >= skip:
                out[:, m - skip] = t1 ^ t2 ^ t3
            na = t3 ^ (_lag(c1, c2, 109) & _lag(c1, c2, 110)) ^ _lag(a1, a2, 69)
            nb = t1 ^ (_lag(a1, a2, 91) & _lag(a1, a2, 92)) ^ _lag(b1, b2, 78)
            nc = t2 ^ (_lag(b1, b2, 82) & _lag(b1, b2, 83)) ^ _lag(c1, c2, 87)
            a2, a1 = a1, na
            b2, b1 = b1, nb
            c2, c1 = c1, nc
    return out


def words_to_bits(words, nbits):
    """Unpack uint64 keystream words (last axis) into 0/1 uint8 bits in keystream order."""
    words = np.ascontiguousarray(words, dtype="<u8")
    bits = np.unpackbits(words.view(np.uint8).reshape(*words.shape[:-1], -1), axis=-1,
                         bitorder="little")
    return bits[..., :nbits]


def trivium_keystream(key: bytes, iv: bytes, nbits: int) -> np.ndarray:
    """Return ``nbits`` keystream bits (uint8 0/1, in output order) for a 10-byte key and IV.

    Key and IV are the byte strings of the eSTREAM vector files (see the module docstring for
    the bit ordering); packing the result LSB first per byte reproduces their ``stream`` bytes.
    """
    k = key_to_int(key, "key")
    v = key_to_int(iv, "iv")
    if isinstance(nbits, bool) or not isinstance(nbits, (int, np.integer)) or nbits < 0:
        raise ValueError(f"nbits must be a non-negative int, not {nbits!r}")
    nwords = -(-int(nbits) // 64)
    return words_to_bits(trivium_words(k, [v], nwords)[0], int(nbits))


# ------------------------------------------------------------------------------------------
# hardware
# ------------------------------------------------------------------------------------------
class Trivium(wiring.Component):
    """Trivium core producing ``width`` keystream bits per cycle (see the module docstring).

    Parameters
    ----------
    width : int
        Keystream bits per cycle, 1 to 64.

    Members
    -------
    key : In(80)
    iv : In(80)
    load : In(1)
    en : In(1)
    ready : Out(1)
    z : Out(width)
    z_q : Out(width)
    """

    def __new__(cls, width=64, **kwargs):
        # Validate before the object exists, so a rejected width leaves no unused elaboratable.
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= 64:
            raise ValueError(f"width must be an int in 1..64, not {width!r}")
        return super().__new__(cls)

    def __init__(self, width=64):
        self.width = width
        self.init_cycles = init_cycles(width)
        self.latency = self.init_cycles + 1
        super().__init__({
            "key": In(80), "iv": In(80), "load": In(1), "en": In(1),
            "ready": Out(1), "z": Out(width), "z_q": Out(width),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.width
        # The state needs no reset (``load`` defines it); reset-less flip-flops leave their
        # set/reset input free, so the constant parts of the load (C, and the zero tails of A
        # and B) map onto it instead of onto a multiplexer per bit.
        a = Signal(_LA, reset_less=True)       # a[k-1] = s_k
        b = Signal(_LB, reset_less=True)       # b[k-1] = s_{93+k}
        c = Signal(_LC, reset_less=True)
        # Step i (1..w) uses x_{t+i-d} = register bit (d - i), 0-indexed.
        zr, na, nb, nc = [], [], [], []
        for i in range(1, w + 1):
            def x(reg, d, i=i):
                return reg[d - i]
            t1 = x(a, 66) ^ x(a, 93)
            t2 = x(b, 69) ^ x(b, 84)
            t3 = x(c, 66) ^ x(c, 111)
            zr.append(t1 ^ t2 ^ t3)
            na.append(t3 ^ (x(c, 109) & x(c, 110)) ^ x(a, 69))
            nb.append(t1 ^ (x(a, 91) & x(a, 92)) ^ x(b, 78))
            nc.append(t2 ^ (x(b, 82) & x(b, 83)) ^ x(c, 87))
        # After w steps: s'_k = x_{t+w+1-k} (step i = w+1-k) for k <= w, else s_{k-w}.
        def shifted(reg, new, length):
            low = Cat(*[new[w - k] for k in range(1, w + 1)])   # k = 1..w -> step w+1-k
            return Cat(low, reg[:length - w])
        zraw = Cat(*zr)
        hold = Signal(w, reset_less=True)
        r = INIT_STEPS % w
        word = Cat(hold[r:], zraw[:r]) if r else zraw     # keystream word at the state

        # No output buffer: the state holds the current word, and advances in the cycle after
        # ``en`` (the consumer asks one cycle ahead), so the state enables are flip-flops and no
        # read pointer or multiplexer sits between the state and ``z``. The state takes key
        # and IV in the cycle after ``load`` from flip-flop selects, then steps
        # ``init_cycles`` times; ``ready`` (a flip-flop) rises with the first word at the state.
        # Enables and selects are duplicated per register (A with ``hold``, B, C), each copy a
        # distinct flip-flop (initial value / reset differ, so synthesis does not merge them;
        # neither acts: the state is undefined until a load, and an advance of it is
        # harmless). The constant parts of the load (the zero tails of A and B, all of C) are
        # the flip-flops' synchronous set/reset on the select copy alone (a select implies
        # its enable), so the key and IV multiplexers are the only load logic.
        count = Signal(range(self.init_cycles + 2))
        busy = Signal()       # initialising
        keyed = Signal()      # initialisation done: the state holds a keystream word
        last = Signal()       # = busy & (count == 1): the last initialisation step
        step_next = Signal()
        keyed_next = Signal()
        m.d.comb += [
            keyed_next.eq(~self.load & (keyed | last)),
            # (a load steps anyway, so `en` needs no `~load` term)
            step_next.eq(self.load | (busy & ~last) | (self.en & (keyed | last))),
        ]
        variants = [dict(init=0), dict(init=1), dict(init=0, reset_less=True)]
        ce = [Signal(name=f"ce_{r}", **v) for r, v in zip("abc", variants, strict=True)]
        ld = [Signal(name=f"ld_{r}", **v) for r, v in zip("abc", variants, strict=True)]
        m.d.sync += [x.eq(step_next) for x in ce] + [x.eq(self.load) for x in ld]
        m.d.sync += keyed.eq(keyed_next)
        for reg, new, length, value, i in ((a, na, _LA, self.key, 0), (b, nb, _LB, self.iv, 1)):
            nxt = shifted(reg, new, length)
            with m.If(ce[i]):
                m.d.sync += reg[:80].eq(Mux(ld[i], value, nxt[:80]))
            with m.If(ld[i]):
                m.d.sync += reg[80:].eq(0)
            with m.Elif(ce[i]):
                m.d.sync += reg[80:].eq(nxt[80:])
        with m.If(ce[0]):
            m.d.sync += hold.eq(zraw)
        with m.If(ld[2]):
            m.d.sync += c.eq(Const(0b111 << 108, _LC))
        with m.Elif(ce[2]):
            m.d.sync += c.eq(shifted(c, nc, _LC))
        with m.If(self.load):
            m.d.sync += [count.eq(self.init_cycles + 1), busy.eq(1), last.eq(0)]
        with m.Elif(busy):
            m.d.sync += [count.eq(count - 1), last.eq(count == 2)]
            with m.If(last):
                m.d.sync += busy.eq(0)
        m.d.comb += [self.ready.eq(keyed), self.z.eq(word)]
        m.d.sync += self.z_q.eq(word)
        return m
