"""Board names on the command line -> board description (imported lazily)."""
import importlib

__all__ = ["BOARDS", "get_board"]

#: command-line board name -> "module:attribute" of its :class:`~combkey.boards.base.Board`.
BOARDS = {
    "ulx3s-85f": "combkey.boards.ulx3s:BOARD",
    "ecpix5-85": "combkey.boards.ecpix5:BOARD",
    "colorlight-5a75b": "combkey.boards.colorlight:BOARD",
    "versa-ecp5-5g": "combkey.boards.versa:BOARD",
}


def get_board(name):
    """Return the :class:`~combkey.boards.base.Board` called ``name``; reject unknown names."""
    if name not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(sorted(BOARDS))}, not {name!r}")
    module, attr = BOARDS[name].split(":")
    return getattr(importlib.import_module(module), attr)
