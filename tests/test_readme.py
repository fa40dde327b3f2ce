"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_python_example_runs(code):
    from incremental.strategies import list_strategies, registry

    before = set(list_strategies())
    try:
        exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    finally:
        for name in set(list_strategies()) - before:  # an example may register a strategy
            registry._FACTORIES.pop(name)


def test_there_are_examples():
    assert len(BLOCKS) >= 2
