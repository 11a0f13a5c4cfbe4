"""The docstring examples of metaxy_core and metaxy_dagster run (and there are some to run)."""

import doctest
import importlib
import inspect
import pkgutil

import pytest

import metaxy_core
import metaxy_dagster


def _modules() -> list[str]:
    names = []
    for package in (metaxy_core, metaxy_dagster):
        found = pkgutil.walk_packages(package.__path__, package.__name__ + ".")
        names += [m.name for m in found if not m.name.endswith("__main__")]
    return sorted(names)


WITH_EXAMPLES = [name for name in _modules() if ">>>" in inspect.getsource(importlib.import_module(name))]


def test_there_are_examples_to_run() -> None:
    assert len(WITH_EXAMPLES) >= 5, WITH_EXAMPLES


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has '>>>' in its source but no example was collected"
    assert result.failed == 0
