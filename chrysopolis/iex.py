# SPDX-License-Identifier: BSD-2-Clause
"""IEx on the image: `chrysopolis run --shell iex`. The beam image's disk carries Elixir's
applications (stage `elixir`); these init arguments start IEx instead of the Eshell, as
Elixir's own `iex` script does (`-noshell -user elixir -extra --no-halt +iex`), in
interactive mode: Elixir loads its modules on first use, which embedded mode refuses.
"""

from chrysopolis import cache
from chrysopolis.errors import UsageError
from chrysopolis.stages import elixir

SHELLS = ("erl", "iex")


def check_shell(name: str, target: str) -> str:
    """`--shell`'s value, refused in one line unless the target's disk has that shell."""
    if name not in SHELLS:
        raise UsageError(f"--shell {name}: not a shell; use one of: {', '.join(SHELLS)}")
    if name == "iex" and "elixir" not in cache.get(target).deps:
        raise UsageError(f"--shell iex: target '{target}' has no Elixir on its disk; use beam")
    return name


def code_path_args(planner: cache.Planner) -> list[str]:
    """Init's arguments that put Elixir in the code path, in interactive mode."""
    paths = [a for p in elixir.ebin_paths(planner.ensure("elixir")) for a in ("-pa", p)]
    return ["-mode", "interactive", *paths]


def init_args(planner: cache.Planner) -> list[str]:
    """Init's arguments that start IEx (after any other: `-extra` ends them)."""
    iex = ["-noshell", "-user", "elixir", "-extra", "--no-halt", "+iex"]
    return [*code_path_args(planner), *iex]
