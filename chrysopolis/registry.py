# SPDX-License-Identifier: BSD-2-Clause
"""A name -> definition table filled by decorators in the modules of some packages.

Stages (cache.py) and checks (checks.py) are each one Registry: a module defines its
entries with a decorator, and the registry imports every module of its packages the first
time it is read, so a new component or target is one new file.
"""

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, packages: list[str]) -> None:
        self.kind = kind
        self.packages = packages
        self.entries: dict[str, T] = {}
        self._loaded = False

    def add(self, name: str, entry: T) -> None:
        if name in self.entries:
            raise RuntimeError(f"{self.kind} {name} defined twice")
        self.entries[name] = entry

    def load(self) -> dict[str, T]:
        """Every entry, after importing each module of the packages (once)."""
        if not self._loaded:
            self._loaded = True
            for pkg_name in self.packages:
                pkg = importlib.import_module(pkg_name)
                for m in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)):
                    importlib.import_module(f"{pkg_name}.{m}")
        return self.entries

    def __contains__(self, name: str) -> bool:
        return name in self.load()

    def __getitem__(self, name: str) -> T:
        return self.load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.load())
