"""pytest set-up shared by every Python test layer (tests/cli, tests/reference).

The layers import their helpers by module name: tests/harness.py (paths, the environment the
binaries run in, checkpoint comparisons) and tests/reference/reference.py (the PyTorch model).
"""
import pathlib
import sys

TESTS = pathlib.Path(__file__).resolve().parent
for folder in (TESTS, TESTS / "reference"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
