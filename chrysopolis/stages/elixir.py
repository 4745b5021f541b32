# SPDX-License-Identifier: BSD-2-Clause
"""Elixir for the disk: the .beam files of Debian's elixir package (lock entry `elixir-debs`,
built with the OTP we run), laid out as OTP applications, lib/<app>-<vsn>/ebin, which the
beam target puts on the disk at /lib. Only what IEx and Elixir code need at run time:
elixir, iex, logger and eex (mix and ex_unit build and test projects on a host). The
modules keep their Docs chunks, so IEx's `h` works on the image.
"""

import json
import re
import shutil
from pathlib import Path

from chrysopolis.cache import Context, stage
from chrysopolis.errors import UserError

APPS = ("elixir", "iex", "logger", "eex")
DEB_LIB = Path("usr/lib/elixir/lib")
MANIFEST = "elixir.json"


@stage(
    "elixir",
    sources=("elixir-debs",),
    doc="Elixir's applications (elixir, iex, logger, eex) from Debian's package, for the disk",
)
def elixir(ctx: Context) -> None:
    src = ctx.src("elixir-debs") / DEB_LIB
    versions = {}
    for app in APPS:
        app_file = src / app / "ebin" / f"{app}.app"
        if not app_file.is_file():
            raise UserError(f"{app_file} is missing: the elixir package changed its layout")
        # Their .app files hold binaries, which erlterm does not read: the vsn is enough.
        m = re.search(r'\{vsn,\s*"([^"]+)"\}', app_file.read_text())
        if not m:
            raise UserError(f"{app_file} has no vsn")
        vsn = versions[app] = m.group(1)
        shutil.copytree(src / app / "ebin", ctx.out / "lib" / f"{app}-{vsn}" / "ebin")
    (ctx.out / MANIFEST).write_text(json.dumps(versions, indent=1, sort_keys=True))
    ctx.note(", ".join(f"{a} {v}" for a, v in versions.items()))


def lib_dirs(out: Path) -> dict[str, Path]:
    """{disk path: directory} of the stage output's applications, for a disk's extra tree."""
    return {f"/lib/{d.name}": d for d in sorted((out / "lib").iterdir())}


def ebin_paths(out: Path) -> list[str]:
    """The applications' ebin directories as the guest sees them (`-pa` arguments)."""
    return [f"/lib/{d.name}/ebin" for d in sorted((out / "lib").iterdir())]
