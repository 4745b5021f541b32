# SPDX-License-Identifier: BSD-2-Clause
"""The repository's own rules: every file of ours says its licence, the code cites design
documents that are in the repo, and registries refuse a name defined twice."""

import re
import subprocess

import pytest

from chrysopolis import config
from chrysopolis.registry import Registry

# Files of ours by kind; data files and the licence text itself carry none.
LICENSED = re.compile(r"(\.(py|c|h|s|ld|mk|toml|md|patch)|/quickstart|/run|/fresh-machine-check)$")


def tracked() -> list[str]:
    r = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=config.ROOT,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip("not a git checkout")
    return sorted(set(r.stdout.split()))


def test_every_file_of_ours_has_an_spdx_line():
    missing = [
        f
        for f in tracked()
        if LICENSED.search("/" + f)
        and (config.ROOT / f).is_file()
        and "SPDX-License-Identifier:" not in (config.ROOT / f).read_text()[:300]
    ]
    assert missing == [], f"add an SPDX-License-Identifier line to: {missing}"


def test_patches_keep_their_upstreams_licence():
    for p in sorted((config.ROOT / "patches").rglob("*.patch")):
        first = p.read_text().splitlines()[0]
        assert first.startswith("SPDX-License-Identifier: "), p


def test_the_code_cites_only_design_documents_in_the_repo():
    cited = []
    for f in tracked():
        if f.endswith((".py", ".c", ".h", ".mk", ".ld", ".s")) and (config.ROOT / f).is_file():
            text = (config.ROOT / f).read_text()
            cited += [f"{f}: {m}" for m in re.findall(r"\b(?:PORTING|STACK)\.md\b", text)]
            for doc in re.findall(r"\bdocs/([\w-]+\.md)", text):
                if not (config.ROOT / "docs" / doc).is_file():
                    cited.append(f"{f}: docs/{doc}")
    assert cited == [], "cite a file under docs/ that exists"


def test_a_registry_refuses_a_name_defined_twice():
    reg: Registry[int] = Registry("thing", [])
    reg.add("a", 1)
    with pytest.raises(RuntimeError, match="thing a defined twice"):
        reg.add("a", 2)
    assert reg["a"] == 1 and "a" in reg and list(reg) == ["a"]
