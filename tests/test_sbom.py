# SPDX-License-Identifier: BSD-2-Clause
"""`chrysopolis sbom`: an SPDX 2.3 document of the built image, validated by spdx-tools."""

import json
import os

import pytest
from conftest import cli
from spdx_tools.spdx.model import RelationshipType
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from chrysopolis import cache, config, locations, lock
from chrysopolis.treehash import file_hash

TARGET = "beam"


@pytest.fixture(scope="module")
def planner(stack_planner):
    stack_planner.ensure(TARGET)
    return stack_planner


@pytest.fixture(scope="module")
def sbom(planner, tmp_path_factory):
    """The document `chrysopolis sbom -o FILE` wrote: (its path, its JSON)."""
    out = tmp_path_factory.mktemp("sbom") / "beam.spdx.json"
    r = cli("sbom", TARGET, "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    return out, json.loads(out.read_text())


def _stages(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += cache.get(n).deps
    return seen


def _sha256(entry: dict) -> str:
    return next(c["checksumValue"] for c in entry["checksums"] if c["algorithm"] == "SHA256")


@pytest.mark.slow
def test_spdx_tools_validates_it(sbom):
    path, _ = sbom
    doc = parse_file(str(path))
    assert validate_full_spdx_document(doc) == []
    assert doc.creation_info.spdx_version == "SPDX-2.3"
    described = [
        r.related_spdx_element_id
        for r in doc.relationships
        if r.relationship_type == RelationshipType.DESCRIBES
    ]
    assert described == ["SPDXRef-Package-chrysopolis"]


@pytest.mark.slow
def test_image_files_and_their_hashes(planner, sbom):
    _, doc = sbom
    out = planner.out_path(TARGET)
    files = {f["fileName"]: _sha256(f) for f in doc["files"] if "Patch" not in f["SPDXID"]}
    want = {
        f"./{p.name}": file_hash(p)
        for p in out.iterdir()
        if p.is_file() and not p.name.startswith(".chrysopolis-")
    }
    assert {"./sel4-beam.img", "./disk.img", "./beam_server.elf", "./chrysopolis.system"} <= set(
        want
    )
    assert files == want
    image = next(p for p in doc["packages"] if p["SPDXID"] == f"SPDXRef-Stage-{TARGET}")
    assert image["versionInfo"] == planner.key(TARGET)[:20]
    assert sorted(image["hasFiles"]) == sorted(
        f["SPDXID"] for f in doc["files"] if "Patch" not in f["SPDXID"]
    )


@pytest.mark.slow
def test_sources_with_pin_hash_licence_and_location(sbom):
    _, doc = sbom
    lk = lock.load()
    used = {s for n in _stages(TARGET) for s in cache.get(n).sources}
    assert {"sel4", "microkit", "lionsos", "sddf", "musl", "otp"} <= used
    pkgs = {p["SPDXID"]: p for p in doc["packages"]}
    sources = {i.removeprefix("SPDXRef-Source-"): p for i, p in pkgs.items() if p["name"] in used}
    assert set(sources) == used
    hosts = {u.split("/")[2] for u in locations.debian_mirrors()}
    for name, p in sources.items():
        s = lk.source(name)
        assert p["versionInfo"] == (s.commit or s.version)
        assert _sha256(p) == s.sha256
        assert p["licenseDeclared"] == s.license != "NOASSERTION"
        if s.kind == "git":
            assert p["downloadLocation"] == f"git+{locations.forge()}/{s.url[7:]}@{s.commit}"
        else:
            assert p["downloadLocation"].split("/")[2] in hosts
        for f in s.files:  # a Debian source's files, each with its sha256
            fp = next(q for q in pkgs.values() if q.get("packageFileName") == f.name)
            assert _sha256(fp) == f.sha256
            assert fp["downloadLocation"] == f.urls()[0]
    assert pkgs["SPDXRef-Source-sel4"]["licenseDeclared"] == "GPL-2.0-only AND BSD-2-Clause"
    assert pkgs["SPDXRef-Source-musl"]["licenseDeclared"] == "MIT"


@pytest.mark.slow
def test_patches_applied_to_their_sources(sbom):
    _, doc = sbom
    rels = {
        (r["spdxElementId"], r["relatedSpdxElement"])
        for r in doc["relationships"]
        if r["relationshipType"] == "PATCH_APPLIED"
    }
    patches = {f["fileName"]: f for f in doc["files"] if f["SPDXID"].startswith("SPDXRef-Patch-")}
    want = sorted(config.ROOT.glob("patches/*/*.patch"))
    assert sorted(patches) == [f"./{p.relative_to(config.ROOT)}" for p in want]
    for p in want:
        f = patches[f"./{p.relative_to(config.ROOT)}"]
        assert _sha256(f) == file_hash(p)
        header = p.read_text().split("\n", 1)[0]
        assert header == f"SPDX-License-Identifier: {f['licenseConcluded']}"
        assert (f["SPDXID"], f"SPDXRef-Source-{p.parent.name}") in rels
    otp = next(f for n, f in patches.items() if "/otp/" in n)
    assert otp["licenseConcluded"] == "Apache-2.0"


@pytest.mark.slow
def test_host_tools_of_each_stage(planner, sbom):
    _, doc = sbom
    pkgs = {p["SPDXID"]: p for p in doc["packages"]}
    tools = {
        (r["spdxElementId"], r["relatedSpdxElement"])
        for r in doc["relationships"]
        if r["relationshipType"] == "BUILD_TOOL_OF"
    }
    seen = 0
    for n in _stages(TARGET):
        rec = json.loads((planner.out_path(n) / ".chrysopolis-inputs.json").read_text())
        for kind, table in (("deb", "host"), ("pypi", "pypi")):
            for name, version in rec[table].items():
                purl = f"pkg:{'deb/debian' if kind == 'deb' else 'pypi'}/"
                ids = [
                    i
                    for i, p in pkgs.items()
                    if p["name"] == name
                    and p["versionInfo"] == version
                    and p["externalRefs"][0]["referenceLocator"].startswith(purl)
                ]
                assert len(ids) == 1, (n, name, version)
                assert (ids[0], f"SPDXRef-Stage-{n}") in tools
                seen += 1
    assert seen == len(tools) and seen > 20
    clang = next(p for p in pkgs.values() if p["name"] == "clang-19")
    assert clang["externalRefs"][0]["referenceLocator"].startswith("pkg:deb/debian/clang-19@1%3A")


@pytest.mark.slow
def test_same_build_same_document(sbom):
    path, _ = sbom
    r = cli("sbom", TARGET)  # stdout this time
    assert r.returncode == 0, r.stderr
    assert r.stdout == path.read_text()
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    r = cli("sbom", TARGET, env=env)
    doc = json.loads(r.stdout)
    assert doc["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    assert doc["documentNamespace"] != json.loads(path.read_text())["documentNamespace"]


def test_unknown_target_is_one_line():
    r = cli("sbom", "no-such-target")
    assert r.returncode == 1
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1
    assert "unknown target 'no-such-target'" in r.stderr and "build --list" in r.stderr


def test_unbuilt_target_names_the_build(tmp_path):
    env = {**os.environ, "CHRYSOPOLIS_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "sbom.json"
    r = cli("sbom", "hello", "-o", str(out), env=env)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "error: target 'hello' is not built; run `chrysopolis build hello` first"
    )
    assert not out.exists()
    assert not (tmp_path / "cache" / "stages").exists()  # nothing was built


def test_every_source_has_a_valid_licence_expression():
    from license_expression import get_spdx_licensing

    licensing = get_spdx_licensing()
    for s in lock.load().sources.values():
        assert s.license != "NOASSERTION", f"[source.{s.name}] has no license"
        assert licensing.validate(s.license).errors == [], s.name
