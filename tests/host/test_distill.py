"""Distillation building blocks: Toeplitz hash, channel, key store, Cascade and LDPC EC."""
import numpy as np
import pytest

from combkey.distill.cascade import cascade_reconcile
from combkey.distill.channel import Bits, ClassicalChannel
from combkey.distill.ec import Reconciler, h2, make_code, node_degrees, peg
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


def _bsc(q, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    return a, a ^ (rng.random(n) < q).astype(np.uint8), rng


def _check_ldpc_run(rec, q, frames, seed):
    rate, m, d = rec.layout(q)
    a, b, rng = _bsc(q, frames * (rec.n - d), seed)
    ch = ClassicalChannel()
    res = rec.reconcile(a, b, q, ch, rng=rng)
    print(f"LDPC n={rec.n} q={q} rate={rate}: FER {res.frame_error_rate:.3f} "
          f"f {res.efficiency:.3f} attempts {res.attempts}")
    np.testing.assert_array_equal(res.bob_corrected, a)
    assert res.frames == frames and res.rates_used == {rate: frames}
    assert res.errors_corrected == int(np.count_nonzero(a != b))
    # honest leak: every syndrome and revealed filler bit sent, minus the d random filler bits
    # of each frame, plus key bits sent in the clear
    sent = sum(ch.bits_by_topic.get("ec." + t, 0) for t in ("syndrome", "reveal", "clear"))
    assert res.leak_bits == sent - frames * d
    assert ch.bits_by_topic["ec.syndrome"] == frames * m
    return res


@pytest.mark.parametrize("q", [0.02, 0.05])
def test_ldpc_frames_decode_at_design_qber(q):
    rec = Reconciler(frame_bits=4096)
    res = _check_ldpc_run(rec, q, 3, int(q * 1000))
    assert res.frame_error_rate == 0
    assert 1.0 < res.efficiency < 1.6, res.efficiency


@pytest.mark.slow
@pytest.mark.parametrize("q", [0.01, 0.02, 0.03, 0.05])
def test_ldpc_16k_frames_decode_at_design_qber(q):
    res = _check_ldpc_run(Reconciler(), q, 4, int(q * 1000) + 7)
    assert res.frame_error_rate == 0
    assert 1.0 < res.efficiency < 1.4, res.efficiency


def test_ldpc_failed_frames_are_sent_in_clear_and_counted():
    rec = Reconciler(frame_bits=4096, max_iter=10)     # every attempt fails: keep them short
    rate, m, d = rec.layout(0.01)
    a, b, rng = _bsc(0.12, 2 * (4096 - d), 5)     # far above the hint: decoding must fail
    ch = ClassicalChannel()
    res = rec.reconcile(a, b, 0.01, ch, rng=rng)
    np.testing.assert_array_equal(res.bob_corrected, a)
    assert res.frames_clear == 2 and res.frame_error_rate == 1.0
    assert ch.bits_by_topic["ec.reveal"] == 2 * d          # every filler bit revealed first
    assert res.leak_bits == 2 * m + 2 * (4096 - d)


def test_ldpc_layout_follows_qber():
    rec = Reconciler(frame_bits=16384)
    chosen = [rec.layout(q) for q in (0.01, 0.02, 0.03, 0.05)]
    rates = [c[0] for c in chosen]
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == 4
    assert rec.layout(0.09)[0] == min(rec.rates)           # beyond the family: lowest rate
    for q, (rate, m, d) in zip((0.01, 0.02, 0.03, 0.05), chosen, strict=True):
        h = h2(q)
        assert m == round((1 - rate) * 16384) and 0 <= d <= 0.12 * 16384
        assert m >= rec.f_high_min * (16384 - d) * h       # fully shortened: enough margin
        assert m - d <= 1.1 * (16384 - d) * h              # first attempt near f_low


def test_peg_code_structure_and_cache(tmp_path):
    rate = 0.8
    H = make_code(1024, rate, cache_dir=tmp_path)
    assert H.shape == (205, 1024)
    np.testing.assert_array_equal(np.sort(np.diff(H.tocsc().indptr)), node_degrees(rate, 1024))
    cdeg = np.diff(H.indptr)
    assert cdeg.max() - cdeg.min() <= 1                    # concentrated check degrees
    assert H.max() == 1                                    # no parallel edges
    files = list(tmp_path.glob("peg-v1-n1024-r0.800-s0.npz"))
    assert len(files) == 1
    again = make_code(1024, rate, cache_dir=None)          # rebuilt, not read
    assert (again != H).nnz == 0
    other = make_code(1024, rate, seed=1, cache_dir=None)
    assert (other != H).nnz > 0


@pytest.mark.slow
@pytest.mark.parametrize("rate", [0.9, 0.85, 0.8, 0.75, 0.65, 0.6])
def test_peg_16k_codes_have_no_4_cycles(rate):
    Hi = make_code(16384, rate).astype(np.int32)
    overlap = (Hi @ Hi.T).tocoo()                          # shared variables of two checks
    assert overlap.data[overlap.row != overlap.col].max() == 1


def test_ldpc_code_errors():
    with pytest.raises(ValueError, match="rate must be one of"):
        make_code(1024, 0.5)
    with pytest.raises(ValueError, match="n must be an integer >= 256"):
        make_code(100, 0.8)
    with pytest.raises(ValueError, match="bp_method must be"):
        Reconciler(bp_method="magic")
    with pytest.raises(ValueError, match="schedule must be"):
        Reconciler(schedule="random")
    with pytest.raises(ValueError, match="rates must be a non-empty subset"):
        Reconciler(rates=(0.99,))
    with pytest.raises(ValueError, match="m must be an integer >= the largest"):
        peg(np.array([3, 3, 3]), 2)
    assert h2(0.5) == 1.0 and h2(0) == 0.0


def test_distill_config_errors():
    with pytest.raises(ValueError, match="ec_method must be"):
        DistillConfig(ec_method="turbo")
    with pytest.raises(ValueError, match="tag_bits must be"):
        DistillConfig(tag_bits=4)
