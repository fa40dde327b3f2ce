"""Scripts of this repository that are no installed package (``benchmarks/``, the data
generators of ``tests/data/``) loaded as modules for their tests, by path: ``tests/`` holds no
packages. With ``python -m pytest`` (the repository root on ``sys.path``), in every import
mode."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: Path) -> ModuleType:
    """``path`` as a module named by its stem, loaded once per process and kept in
    ``sys.modules`` (a dataclass of the script looks its module up there).

    Raises:
        ImportError: the module name is another file's (two scripts of one name).
    """
    path = Path(path).resolve()
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", None) or "").resolve() != path:
            raise ImportError(f"cannot load {path} as {name!r}: that name is {loaded!r}")
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as the module ``name``."""
    return load_script(ROOT / "benchmarks" / f"{name}.py")


def load_test_data(name: str) -> ModuleType:
    """``tests/data/<name>.py`` (a generator of test data) as the module ``name``."""
    return load_script(ROOT / "tests" / "data" / f"{name}.py")
