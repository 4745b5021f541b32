# SPDX-License-Identifier: BSD-2-Clause
"""Packs the project's own files that are not Python (the lock, our patches and C) into the
wheel as chrysopolis/_project, so a non-editable install (`pip install .`, pipx) works;
config.ROOT finds them there. An editable install reads them from the checkout."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PROJECT_FILES = (
    "lock.toml",
    ".clang-format",
    "patches",
    "mk",
    "runtime",
    "targets",
    "erlang",
)


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        here = Path(__file__).resolve().parent
        dest = Path(self.build_lib) / "chrysopolis" / "_project"
        shutil.rmtree(dest, ignore_errors=True)
        for rel in PROJECT_FILES:
            src, out = here / rel, dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, out, symlinks=True)
            else:
                shutil.copy2(src, out)


setup(cmdclass={"build_py": BuildPy})
