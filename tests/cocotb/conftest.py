"""Put ``tests/cocotb`` on ``sys.path`` so that every bench (and the simulator side) can
``import runner``, whatever pytest's import mode."""
import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
