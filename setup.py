"""Map the design folders onto the one import name ``combkey``.

``host/`` is ``combkey``; ``gateware/``, ``sim/`` and ``boards/`` are its subpackages. The package
list is computed by walking the folders so that a new subpackage needs no edit here.
"""
import os

from setuptools import setup

ROOTS = {"combkey": "host", "combkey.gateware": "gateware", "combkey.sim": "sim",
         "combkey.boards": "boards"}


def _packages():
    found = []
    for name, folder in ROOTS.items():
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
            if "__init__.py" in filenames:
                rel = os.path.relpath(dirpath, folder)
                found.append(name if rel == "." else name + "." + rel.replace(os.sep, "."))
    return sorted(found)


setup(packages=_packages(), package_dir=ROOTS,
      package_data={"combkey.boards": ["*.json"], "combkey": ["data/*"]})
