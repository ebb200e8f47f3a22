"""The synthesis variants (dsp_primitive=True) build, instantiate the ECP5 primitives, and the
block-RAM initialisation encodes the cosine table."""
import numpy as np
import pytest
from amaranth.back import rtlil

from combkey.gateware.dsp.common import dp16kd_initvals
from combkey.gateware.dsp.loop_filter import LoopFilter
from combkey.gateware.dsp.phase_detector import COS_TABLE
from combkey.gateware.loops.opll import OPLL
from combkey.gateware.loops.phase_compensator import PhaseCompensator
from combkey.gateware.loops.reprate import RepRateLock


@pytest.mark.parametrize("factory,mults,ebr", [
    (lambda: LoopFilter(dsp_primitive=True), 3, 0),
    (lambda: OPLL(dsp_primitive=True), 5, 1),
    (lambda: RepRateLock(dsp_primitive=True), 3, 0),
    (lambda: PhaseCompensator(dsp_primitive=True), 3, 0),
])
def test_primitive_variants_elaborate(factory, mults, ebr):
    text = rtlil.convert(factory())
    assert text.count("cell \\MULT18X18D ") == mults
    assert text.count("cell \\DP16KD ") == ebr


def test_rom_initval_encodes_the_table():
    vals = dp16kd_initvals(COS_TABLE)
    got = []
    for k in range(64):
        v = vals[f"INITVAL_{k:02X}"]
        assert v < 1 << 320
        got.extend((v >> (20 * i)) & 0x3FFFF for i in range(16))
        assert all((v >> (20 * i + 18)) & 3 == 0 for i in range(16))   # padding bits
    got = np.array(got)
    got = np.where(got >= 1 << 17, got - (1 << 18), got)
    np.testing.assert_array_equal(got, COS_TABLE)


def test_rom_rejects_a_wrong_table_size():
    with pytest.raises(ValueError, match="table must have 1024 entries"):
        dp16kd_initvals([0] * 10)
