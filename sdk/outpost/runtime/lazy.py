"""Package attributes loaded on first use (PEP 562), for ``outpost`` and ``outpost_endpoint``.

Both packages export names whose modules are heavy (the HTTP client, the executor, the AMQP
link, the engines) while the processes on compute nodes -- engine managers and workers -- import
the packages only for small modules on their way to their first task.  So the exported names are
resolved by the package's ``__getattr__`` when first asked for, then kept in the package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(
    package: str, exports: Mapping[str, str | Callable[[], Any]]
) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: each name of ``exports`` is the attribute of that
    name of the module its value names (the module itself where the name is the package's own
    submodule, e.g. ``"errors": "outpost.errors"``), or what its callable returns."""

    def __getattr__(name: str) -> Any:
        source = exports.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if callable(source):
            value = source()
        else:
            module = importlib.import_module(source)
            value = module if source == f"{package}.{name}" else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
