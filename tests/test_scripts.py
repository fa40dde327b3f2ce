"""tests/scripts.py: a script is loaded once per process, and a second file of its name is
refused instead of shadowing it."""

from __future__ import annotations

import sys

import pytest

from tests.scripts import load_script, load_test_data


def test_a_script_loads_once_and_another_file_of_its_name_is_refused(tmp_path, monkeypatch):
    first = tmp_path / "a" / "made_up_script.py"
    other = tmp_path / "b" / "made_up_script.py"
    for path, value in ((first, 1), (other, 2)):
        path.parent.mkdir()
        path.write_text(f"VALUE = {value}\n")
    monkeypatch.delitem(sys.modules, "made_up_script", raising=False)
    module = load_script(first)
    assert module.VALUE == 1 and load_script(first) is module
    with pytest.raises(ImportError, match="cannot load .*made_up_script.py as 'made_up_script'"):
        load_script(other)
    monkeypatch.delitem(sys.modules, "made_up_script")


def test_a_script_that_fails_to_load_is_not_kept(tmp_path, monkeypatch):
    broken = tmp_path / "broken_script.py"
    broken.write_text("raise RuntimeError('broken on import')\n")
    monkeypatch.delitem(sys.modules, "broken_script", raising=False)
    with pytest.raises(RuntimeError, match="broken on import"):
        load_script(broken)
    assert "broken_script" not in sys.modules


def test_the_test_data_generators_load():
    assert callable(load_test_data("make_folder_dataset").make_folder_dataset)
