"""The deprecated-Amaranth-API lint catches what 0.5 does not warn about; the tree is clean."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINT = ROOT / "tools" / "lint_amaranth.py"


def run(*paths):
    return subprocess.run([sys.executable, str(LINT), *map(str, paths)], capture_output=True,
                          text=True)


def test_lint_flags_deprecated_apis(tmp_path):
    # Built from pieces so that this file does not trip the lint itself.
    rec, sync, reset = "Rec" + "ord", "add_sync" + "_process", "res" + "et="
    (tmp_path / "bad.py").write_text(
        f"from amaranth.hdl import {rec}\n"
        f"sim.{sync}(p)\n"
        f"s = Signal(4, {reset}1)\n"
        f"def ok():\n    \"\"\"{rec} the value (prose is fine).\"\"\"\n")
    result = run(tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert [ln.split(":")[1] for ln in lines] == ["1", "2", "3"]


def test_tree_uses_no_deprecated_amaranth_api():
    result = run(*(ROOT / d for d in ("host", "gateware", "sim", "boards", "tests")))
    assert result.returncode == 0, result.stdout
