"""Modules the agent's dependencies import but a running agent never uses, loaded on first use.

``websockets.version`` imports ``importlib.metadata`` (with zipfile, email,
pathlib, …: about 3 MB of memory) and uses it only in development builds of
websockets. :func:`defer` puts a stand-in module in its place: the import
statement finds it and costs nothing; the first attribute read, if one ever
comes, imports the real module and the stand-in takes over its contents.

(The standard library's ``importlib.util.LazyLoader`` does not help here: the
import system reads ``__spec__`` of a module already in ``sys.modules`` on
every later import statement, which loads a lazy module at once.)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

DEFERRED = ("importlib.metadata",)


class Deferred(ModuleType):
    """Stands in for a module until something reads one of its attributes."""

    def __getattr__(self, attribute: str) -> Any:
        # Only called for attributes the stand-in lacks: load the real module.
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)
        self.__dict__.update(real.__dict__)
        return getattr(real, attribute)


def defer(names: tuple[str, ...] = DEFERRED) -> None:
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        stand_in = Deferred(name)
        stand_in.__spec__ = spec
        stand_in.__file__ = spec.origin
        stand_in.__path__ = list(spec.submodule_search_locations or [])
        sys.modules[name] = stand_in
        parent, _, child = name.rpartition(".")
        if parent:
            # What the import system does after loading a submodule.
            setattr(sys.modules[parent], child, stand_in)
