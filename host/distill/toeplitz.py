"""Toeplitz hashing over GF(2) computed with real FFTs: privacy amplification and verification.

Interface
---------
``toeplitz_hash(bits, seed_bits, out_len) -> np.ndarray[uint8]``
    ``bits``: 0/1 array of length ``n``; ``seed_bits``: 0/1 array of length ``n + out_len - 1``
    that defines the ``out_len x n`` Toeplitz matrix ``T[i, j] = seed[i - j + n - 1]``;
    returns ``T @ bits mod 2`` (length ``out_len``). The product is an integer convolution,
    computed with ``scipy.fft.rfft`` in float64 and rounded; exact while ``n < 2**40``
    (error of the float FFT well below 0.5 for 0/1 inputs of that size).
``toeplitz_hash_direct(bits, seed_bits, out_len)``
    The same product by explicit dense matrix, for tests on small sizes only.
``seed_length(n, out_len) -> int``
    ``n + out_len - 1``.

The Toeplitz family is universal_2: for ``x != x'``, ``P_seed[T x = T x'] = 2**-out_len``
(Carter and Wegman, "Universal classes of hash functions", J. Comput. Syst. Sci. 18 (1979);
Krawczyk, "LFSR-based hashing and authentication", CRYPTO 1994). It is therefore usable both for
privacy amplification (leftover hash lemma) and for error verification with
``epsilon_ver = 2**-tag_bits``.

Cost: one FFT of size ``next_fast_len(n + out_len + n)`` for the seed and one for the bits, one
inverse; memory about ``24 * fft_len`` bytes (about 3.6 GB for ``n = 10**8``).
"""
import numpy as np
import scipy.fft

__all__ = ["toeplitz_hash", "toeplitz_hash_direct", "seed_length"]


def seed_length(n, out_len):
    """Return the number of seed bits of an ``out_len x n`` Toeplitz matrix."""
    return n + out_len - 1


def _check(bits, seed_bits, out_len):
    bits = np.asarray(bits)
    seed_bits = np.asarray(seed_bits)
    if bits.ndim != 1:
        raise ValueError(f"bits must be a 1-D array, not shape {bits.shape!r}")
    n = bits.size
    if not isinstance(out_len, (int, np.integer)) or out_len < 0:
        raise ValueError(f"out_len must be a non-negative integer, not {out_len!r}")
    if out_len > n:
        raise ValueError(f"out_len must be at most the input length {n}, not {out_len!r}")
    if seed_bits.shape != (seed_length(n, out_len),) and out_len > 0:
        raise ValueError(f"seed_bits must have length n + out_len - 1 = "
                         f"{seed_length(n, out_len)}, not {seed_bits.size!r}")
    return bits, seed_bits, n


def toeplitz_hash(bits, seed_bits, out_len):
    """Return ``T @ bits mod 2`` for the Toeplitz matrix defined by ``seed_bits``."""
    bits, seed_bits, n = _check(bits, seed_bits, out_len)
    if out_len == 0 or n == 0:
        return np.zeros(out_len, np.uint8)
    # y[i] = sum_j seed[i - j + n - 1] x[j] = (seed * x)[i + n - 1]  (full convolution)
    size = scipy.fft.next_fast_len(seed_bits.size + n - 1, real=True)
    fs = scipy.fft.rfft(seed_bits.astype(np.float64), size)
    fs *= scipy.fft.rfft(bits.astype(np.float64), size)
    conv = scipy.fft.irfft(fs, size, overwrite_x=True)
    del fs
    window = conv[n - 1:n - 1 + out_len]
    return (np.rint(window).astype(np.int64) & 1).astype(np.uint8)


def toeplitz_hash_direct(bits, seed_bits, out_len):
    """Return the same product by a dense matrix (small sizes only; test oracle)."""
    bits, seed_bits, n = _check(bits, seed_bits, out_len)
    i = np.arange(out_len)[:, None]
    j = np.arange(n)[None, :]
    t = seed_bits[i - j + n - 1].astype(np.int64)
    return ((t @ bits.astype(np.int64)) & 1).astype(np.uint8)
