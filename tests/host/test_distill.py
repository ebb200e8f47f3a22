"""Distillation building blocks: Toeplitz hash, channel, key store, Cascade and LDPC EC."""
import numpy as np
import pytest

from combkey.distill.cascade import cascade_reconcile
from combkey.distill.channel import Bits, ClassicalChannel
from combkey.distill.ec import Reconciler, h2, make_code
from combkey.distill.keystore import KeyStore
from combkey.distill.pipeline import DistillConfig
from combkey.distill.toeplitz import seed_length, toeplitz_hash, toeplitz_hash_direct


@pytest.mark.parametrize("n,m", [(1, 1), (7, 3), (64, 64), (257, 100), (1000, 31)])
def test_toeplitz_fft_equals_dense(n, m):
    rng = np.random.default_rng(n * 1000 + m)
    for _ in range(5):
        x = rng.integers(0, 2, n, dtype=np.uint8)
        s = rng.integers(0, 2, seed_length(n, m), dtype=np.uint8)
        np.testing.assert_array_equal(toeplitz_hash(x, s, m), toeplitz_hash_direct(x, s, m))


def test_toeplitz_large_block_matches_direct_rows():
    rng = np.random.default_rng(3)
    n, m = 200_000, 150_000
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, seed_length(n, m), dtype=np.uint8)
    y = toeplitz_hash(x, s, m)
    for i in (0, 1, m // 2, m - 1):   # row i of T is seed[i + n - 1 - j], j = 0..n-1
        row = s[i + n - 1 - np.arange(n)]
        assert y[i] == int(row.astype(np.int64) @ x) & 1


def test_toeplitz_errors_name_the_parameter():
    with pytest.raises(ValueError, match="seed_bits must have length"):
        toeplitz_hash(np.zeros(8, np.uint8), np.zeros(3, np.uint8), 4)
    with pytest.raises(ValueError, match="out_len must be at most"):
        toeplitz_hash(np.zeros(8, np.uint8), np.zeros(20, np.uint8), 9)


def test_channel_counts_bits_and_names_missing_topic():
    ch = ClassicalChannel()
    ch.send("alice", "bob", "syn", Bits(np.ones(100)))
    ch.send("bob", "alice", "ack", True)
    assert ch.bits_sent[("alice", "bob")] == 100
    assert ch.bits_by_topic["ack"] == 1
    assert ch.recv("bob", "syn").array.sum() == 100
    with pytest.raises(LookupError, match="topic 'syn'"):
        ch.recv("bob", "syn")
    with pytest.raises(ValueError, match="dst must be one of"):
        ch.send("alice", "eve", "x", 1)


def test_channel_tamper_hook_changes_payload():
    def tamper(src, dst, topic, payload):
        return Bits(payload.array ^ 1) if topic == "t" else payload
    ch = ClassicalChannel(tamper=tamper)
    ch.send("alice", "bob", "t", Bits(np.zeros(4)))
    assert ch.recv("bob", "t").array.tolist() == [1, 1, 1, 1]


def test_keystore_roundtrip(tmp_path):
    store = KeyStore(tmp_path / "k.sqlite")
    bits = np.random.default_rng(0).integers(0, 2, 1001, dtype=np.uint8)
    row = store.append("s1", "alice", 3, 0, bits, 1e-9)
    np.testing.assert_array_equal(store.get(row), bits)
    assert store.total_bits() == 1001 and store.count() == 1
    meta = store.rows("s1")[0]
    assert meta["channel"] == 3 and meta["length_bits"] == 1001 and meta["epsilon"] == 1e-9
    with pytest.raises(ValueError, match="epsilon must be in"):
        store.append("s1", "bob", 3, 0, bits, 0)
    store.close()


@pytest.mark.parametrize("q", [1e-4, 0.01, 0.03, 0.05])
def test_cascade_corrects_and_reports_efficiency(q):
    rng = np.random.default_rng(int(q * 1e5))
    n = 60_000
    a = rng.integers(0, 2, n, dtype=np.uint8)
    b = a ^ (rng.random(n) < q).astype(np.uint8)
    ch = ClassicalChannel()
    res = cascade_reconcile(a, b, q, ch, passes=10, rng=rng)
    np.testing.assert_array_equal(res.bob_corrected, a)
    assert res.errors_corrected == int(np.count_nonzero(a != b))
    assert res.leak_bits == ch.bits_by_topic["cascade.parity"] + ch.bits_by_topic[
        "cascade.answer"]
    assert 1.0 <= res.efficiency < 1.6, res.efficiency


@pytest.mark.parametrize("q", [0.02, 0.05])
def test_ldpc_frames_decode_at_design_qber(q):
    rng = np.random.default_rng(int(q * 1000))
    rec = Reconciler(frame_bits=4096, f_start=1.4, modulation=0.3, max_iter=50)
    n = 3 * (4096 - rec.layout(q)[1])
    a = rng.integers(0, 2, n, dtype=np.uint8)
    b = a ^ (rng.random(n) < q).astype(np.uint8)
    res = rec.reconcile(a, b, q, ClassicalChannel(), rng=rng)
    print(f"LDPC q={q}: FER {res.frame_error_rate:.3f} f {res.efficiency:.3f} "
          f"frames {res.frames} retried {res.frames_retried}")
    np.testing.assert_array_equal(res.bob_corrected, a)
    assert res.frames == 3
    assert res.frame_error_rate == 0
    assert res.efficiency < 2.0
    m, d = rec.layout(q)
    assert res.leak_bits >= 3 * (m - d)


def test_ldpc_code_shape_and_errors():
    H = make_code(1024, 256)
    assert H.shape == (256, 1024) and H.sum(axis=1).min() > 0
    with pytest.raises(ValueError, match="m must be an integer in"):
        make_code(1024, 2000)
    with pytest.raises(ValueError, match="bp_method must be"):
        Reconciler(bp_method="magic")
    assert h2(0.5) == 1.0 and h2(0) == 0.0


def test_distill_config_errors():
    with pytest.raises(ValueError, match="ec_method must be"):
        DistillConfig(ec_method="turbo")
    with pytest.raises(ValueError, match="tag_bits must be"):
        DistillConfig(tag_bits=4)
