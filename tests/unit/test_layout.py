"""Test modules are imported by basename (rootdir sys.path insertion): two files with the same name in
different test folders break collection of the whole suite."""
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_test_module_basenames_are_unique():
    names = Counter(p.name for d in ("tests", "conformance") for p in (REPO / d).rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
