"""Reject Amaranth APIs that 0.5 deprecates but does not always warn about.

``from amaranth.hdl import Record`` gives no warning in 0.5.10, so ``PYTHONWARNINGS=error``
alone does not catch it. Usage: ``python tools/lint_amaranth.py DIR...``; exits 1 on a hit.
"""
import pathlib
import re
import sys

PATTERNS = {
    r"(?<![\w.])Record\s*\(|import[^\n#]*\bRecord\b|amaranth\.hdl\.rec\b":
        "Record (use data.Struct / wiring.Signature)",
    r"add_sync_process": "add_sync_process (use add_testbench / add_process)",
    r"yield\s+Tick": "generator testbench (use async testbenches)",
    r"\bSettle\b": "Settle (removed; use async testbenches)",
    r"hdl\.Memory|from amaranth\.hdl import[^\n]*\bMemory\b": "hdl.Memory (use lib.memory.Memory)",
    r"Signal\([^)]*\breset=": "reset= (use init=)",
    r"\blog2_int\b": "log2_int (use ceil_log2 / exact_log2)",
    r"amaranth\.lib\.coding": "lib.coding (deprecated)",
}
SELF = pathlib.Path(__file__).resolve()


def main(paths):
    hits = 0
    for root in paths:
        for path in pathlib.Path(root).rglob("*.py"):
            if path.resolve() == SELF:
                continue
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                for pattern, what in PATTERNS.items():
                    if re.search(pattern, line):
                        print(f"{path}:{lineno}: deprecated Amaranth API: {what}")
                        hits += 1
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["."]))
