"""Named checks: each boots a real image and asserts on its serial output."""

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from chrysopolis.stages import Planner

# Modules that define checks; importing one registers its checks.
CHECK_MODULES = ["chrysopolis.build"]


@dataclass
class Check:
    name: str
    run: Callable[[Planner], str]  # returns a one-line summary; raises UserError on failure
    doc: str
    needs: tuple[str, ...]  # lock names of the sources it needs (for skipping in tests)


REGISTRY: dict[str, Check] = {}


def check(name: str, *, needs: tuple[str, ...] = ()):
    def register(fn: Callable[[Planner], str]) -> Callable[[Planner], str]:
        REGISTRY[name] = Check(name, fn, (fn.__doc__ or "").strip().split("\n")[0], needs)
        return fn

    return register


def load_all() -> dict[str, Check]:
    for m in CHECK_MODULES:
        importlib.import_module(m)
    return REGISTRY
