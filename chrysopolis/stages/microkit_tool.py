# SPDX-License-Identifier: BSD-2-Clause
"""The `microkit` tool of the Microkit 2.0.1 SDK: Rust, built once for every board and RAM size.

Cargo builds it offline against Debian's crates (a source replacement to
/usr/share/cargo/registry), after our patches bridge the API gaps to those crate versions;
stage `sdk` (stages/sdk.py) puts it into each SDK. A module of its own: the tool's key
does not follow the SDK recipe's code.
"""

import shutil
import subprocess
from pathlib import Path

from chrysopolis import toolchain
from chrysopolis.cache import Context, stage
from chrysopolis.errors import UserError

# Debian's Rust (cargo-web/rustc-web, bookworm-security), called by path: a rustup toolchain
# earlier on PATH would otherwise build the tool with a compiler the stage key does not follow.
RUST_PACKAGES = ("cargo-web", "rustc-web")
CARGO = Path("/usr/bin/cargo")
RUST_ENV = {"RUSTC": "/usr/bin/rustc", "RUSTDOC": "/usr/bin/rustdoc"}

# Debian's crate registry: each crate is unpacked there with a .cargo-checksum.json.
DEBIAN_CRATES = Path("/usr/share/cargo/registry")
CARGO_CONFIG = f"""\
[source.crates-io]
replace-with = "debian"

[source.debian]
directory = "{DEBIAN_CRATES}"

[net]
offline = true
"""


def _debian_rust() -> None:
    missing = [p for p, v in toolchain.debian_versions(RUST_PACKAGES).items() if not v]
    if missing:
        raise UserError(
            f"Debian packages {', '.join(missing)} are missing (bookworm's cargo and "
            "rustc are too old for the microkit tool); run `chrysopolis setup`"
        )


def _version_line(cmd: str) -> str:
    return subprocess.run([cmd, "--version"], capture_output=True, text=True).stdout.strip()


RUST_HOST = (
    "librust-serde-dev",
    "librust-serde-derive-dev",
    "librust-serde-json-dev",
    "librust-roxmltree-dev",
    *RUST_PACKAGES,
)


@stage(
    "microkit-tool",
    sources=("microkit",),
    files=("patches/microkit",),
    host=RUST_HOST,
)
def microkit_tool(ctx: Context) -> None:
    """The `microkit` tool (Rust; the same for every board and RAM size)."""
    _debian_rust()
    tree = ctx.copy_source("microkit")
    ctx.apply_patches("patches/microkit", tree)
    ctx.note(f"# {_version_line(RUST_ENV['RUSTC'])}; {_version_line(str(CARGO))}")
    cargo_home = ctx.work / "cargo-home"
    cargo_home.mkdir()
    (cargo_home / "config.toml").write_text(CARGO_CONFIG)
    env = {
        **RUST_ENV,
        "CARGO_HOME": str(cargo_home),
        "CARGO_TARGET_DIR": str(ctx.work / "cargo-target"),
    }
    crate = tree / "tool" / "microkit"
    # The upstream Cargo.lock pins crates.io versions Debian lacks; cargo re-resolves it offline.
    ctx.run([CARGO, "build", "--release", "--offline"], cwd=crate, env=env)
    ctx.run([CARGO, "test", "--release", "--offline"], cwd=crate, env=env)  # its 64 tests
    (ctx.out / "bin").mkdir()
    tool = ctx.out / "bin" / "microkit"
    shutil.copy2(ctx.work / "cargo-target" / "release" / "microkit", tool)
    tool.chmod(0o755)
