"""Channel-fit estimate: the budget arithmetic, and synthesis counts of a small block."""
import pytest

from combkey.boards import fit


def test_largest_respects_every_resource():
    cap = {"LUT4": 1000, "FF": 1000, "DP16KD": 10, "MULT18X18D": 10}
    base = (1, {"LUT4": 200, "FF": 100, "DP16KD": 1, "MULT18X18D": 0})
    per = {"LUT4": 100, "FF": 50, "DP16KD": 2, "MULT18X18D": 0}
    # LUT: 1 + (700 - 200) // 100 = 6; EBR: 1 + (7 - 1) // 2 = 4 -> EBR limits.
    assert fit._largest(base, per, cap) == (4, "DP16KD")
    per["DP16KD"] = 0
    assert fit._largest(base, per, cap) == (6, "LUT4")
    # A base that is already over budget fits fewer than the base count.
    assert fit._largest((1, {**base[1], "LUT4": 800}), per, cap) == (0, "LUT4")


@pytest.mark.slow
def test_synth_counts_of_a_small_block(tmp_path):
    from combkey.gateware.spi import SPIDAC
    counts = fit.synth_counts(SPIDAC(), tmp_path)
    assert counts["FF"] > 32 and counts["LUT4"] > 50 and counts["DP16KD"] == 0


def test_every_board_device_has_its_resources():
    from combkey.boards.fit import DEVICE_RESOURCES
    from combkey.boards.registry import BOARDS, get_board
    for name in BOARDS:
        device = get_board(name).device
        family = [k for k in DEVICE_RESOURCES if device.startswith(k)]
        assert len(family) == 1, f"{name}: {device} matches {family}"
        assert set(DEVICE_RESOURCES[family[0]]) == {"LUT4", "FF", "DP16KD", "MULT18X18D"}
