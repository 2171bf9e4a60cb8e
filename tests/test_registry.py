"""fastcourse.registry: a registry imports the modules it names on its first lookup, once."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from fastcourse.errors import UsageError
from fastcourse.registry import Registry

SLOW_MODULE = """
import time
from {registry_module} import THINGS
time.sleep(0.5)  # a module that takes a while to import, as the model modules do (Keras)

@THINGS.register()
def thing():
    '''A thing.'''
"""


@pytest.fixture
def slow_registry(tmp_path, monkeypatch):
    (tmp_path / "reg_holder.py").write_text(
        "from fastcourse.registry import Registry\nTHINGS = Registry('thing', ('reg_slow_things',))\n"
    )
    (tmp_path / "reg_slow_things.py").write_text(SLOW_MODULE.format(registry_module="reg_holder"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield __import__("reg_holder").THINGS
    for name in ("reg_holder", "reg_slow_things"):
        sys.modules.pop(name, None)


def test_a_second_thread_waits_for_the_first_lookup_instead_of_seeing_a_half_filled_registry(slow_registry):
    """Two threads look a name up at once while the registry's module is still importing: both find
    it (before the lock, the second got `unknown thing 'thing' (known: )`)."""
    start = threading.Barrier(2)

    def look_up(_):
        start.wait()
        return slow_registry.get("thing").__name__

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(look_up, range(2))) == ["thing", "thing"]
    assert slow_registry.names() == ["thing"]


def test_an_unknown_name_is_one_line_with_the_nearest_known(slow_registry):
    with pytest.raises(UsageError) as err:
        slow_registry.get("thnig")
    assert str(err.value) == "unknown thing 'thnig'; did you mean 'thing'? (known: thing)"


def test_a_module_that_fails_to_import_is_tried_again_on_the_next_lookup(tmp_path, monkeypatch):
    (tmp_path / "reg_broken.py").write_text("raise ImportError('not yet')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    things = Registry("thing", ("reg_broken",))
    with pytest.raises(ImportError):
        things.names()
    (tmp_path / "reg_broken.py").write_text("")
    sys.modules.pop("reg_broken", None)
    assert things.names() == []
