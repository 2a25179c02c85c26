"""Runs shared through an OCI registry (issue 31), against Debian's real `docker-registry`
(distribution 2.8, no referrers API) started here on a loopback port, and, for the referrers API
and faults a real registry will not produce on demand, the minimal registry in registries.py."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import catalytic, git
from .registries import Distribution
from .test_archive import _env, inproc, made  # noqa: F401 (the module fixture)

pytestmark = pytest.mark.skipif(not Path("/usr/bin/docker-registry").exists() and
                                shutil.which("docker-registry") is None,
                                reason="docker-registry is not installed (.ci/run installs it)")


def _json(proc: object) -> dict:
    return json.loads(proc.stdout)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    reg = Distribution(tmp_path_factory.mktemp("registry")).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def shared(made: dict[str, Path], tmp_path_factory: pytest.TempPathFactory  # noqa: F811
           ) -> dict[str, Path]:
    """The archive with its attestation beside it, in a directory of their own."""
    d = tmp_path_factory.mktemp("shared")
    shutil.copyfile(made["archive"], d / "r1.catalytic.zip")
    a = inproc("attest", "r1.catalytic.zip", "--sign", str(made["key"]), "--json", cwd=d)
    assert a.returncode == 0, a.stdout + a.stderr
    return {**made, "dir": d, "archive_file": d / "r1.catalytic.zip",
            "attestation": d / "r1.intoto.json"}


def _cache_blobs() -> list[str]:
    root = Path(os.environ["HOME"]) / ".cache/catalytic/oci/blobs/sha256"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def _index_via_registry(reg: Distribution, name: str, subject: str) -> dict:
    """The fallback tag read with the registry's own API (no code of ours)."""
    req = urllib.request.Request(
        f"http://{reg.host}/v2/{name}/manifests/sha256-{subject.split(':')[1]}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_push_then_everything_works_from_the_registry(shared: dict[str, Path],
                                                      registry: Distribution,
                                                      tmp_path: Path) -> None:
    ref = f"oci://{registry.host}/team/runs"
    p = inproc("archive", "push", str(shared["archive_file"]), ref, "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    info = _json(p)["details"]
    digest = info["digest"]
    assert info["reference"] == f"{ref}@{digest}" and info["tag"] == "r1"
    archive_sha = hashlib.sha256(shared["archive_file"].read_bytes()).hexdigest()
    assert info["archive"]["digest"] == f"sha256:{archive_sha}"
    assert info["blobs_uploaded"] == 3  # the empty config, the archive, the envelope
    assert info["attestation"]["via"] == "fallback-tag"

    # The manifest as the registry serves it: our artifact type, annotations, empty config.
    with urllib.request.urlopen(urllib.request.Request(
            f"http://{registry.host}/v2/team/runs/manifests/r1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})) as resp:
        m = json.loads(resp.read())
    assert m["artifactType"] == "application/vnd.catalytic.archive.v1+zip"
    assert m["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert m["layers"][0]["digest"] == f"sha256:{archive_sha}"
    ann = m["annotations"]
    assert ann["dev.catalytic.run.id"] == "r1"
    assert ann["dev.catalytic.run.commit"] == git(shared["repo"], "rev-parse",
                                                  "HEAD~1").stdout.strip()
    assert len(ann["dev.catalytic.run.signer"]) == 64 and ann["org.opencontainers.image.created"]

    # The attestation, found through the registry's own API via the fallback tag.
    idx = _index_via_registry(registry, "team/runs", digest)
    assert idx["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [(d["digest"], d["artifactType"]) for d in idx["manifests"]] == [
        (info["attestation"]["digest"], "application/vnd.in-toto+json")]

    # Pushing the same run again uploads no blob (the registry's own log agrees).
    before = registry.requests("POST", "/v2/team/runs/blobs/uploads/")
    again = inproc("archive", "push", str(shared["archive_file"]), ref, "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _json(again)["details"]["blobs_uploaded"] == 0
    assert _json(again)["details"]["digest"] == digest
    assert registry.requests("POST", "/v2/team/runs/blobs/uploads/") == before == 3

    # Elsewhere, with only a trust file: verify by digest, replay, restore.
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    shutil.copyfile(shared["trust"], empty / "allowed_signers")
    v = inproc("verify", f"{ref}@{digest}", "--trust-file", "allowed_signers", "--json",
               cwd=empty)
    assert v.returncode == 0, v.stdout + v.stderr
    row = _json(v)["details"]["results"][0]
    assert row["trusted"] and row["run_id"] == "r1" and row["run_dir"] == f"{ref}@{digest}"
    r = inproc("replay", f"{ref}:r1", "--trust-file", "allowed_signers", "--json", cwd=empty)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = _json(r)["details"]
    assert rep["verdict"] == "exact" and rep["pulled"]["digest"] == digest
    assert rep["source_archive"] == {"name": "r1.catalytic.zip", "sha256": archive_sha}
    out = empty / "out"
    out.mkdir()
    rb = inproc("restore", "bundle", f"{ref}@{digest}", "--restore-root", str(out),
                "--trust-file", "allowed_signers", "--json", cwd=empty)
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert (out / "outputs/sample.txt").read_bytes() == \
        (shared["repo"] / "outputs/sample.txt").read_bytes()
    assert sorted(x.name for x in empty.iterdir()) == ["allowed_signers", "out", "replays"]

    # Pull: byte-identical, with the attestation beside it, which verifies.
    got = inproc("archive", "pull", f"{ref}:r1", "--json", cwd=empty)
    assert got.returncode == 0, got.stdout + got.stderr
    assert (empty / "r1.catalytic.zip").read_bytes() == shared["archive_file"].read_bytes()
    assert (empty / "r1.intoto.json").read_bytes() == shared["attestation"].read_bytes()
    va = inproc("verify", "r1.catalytic.zip", "--attestation", "r1.intoto.json",
                "--trust-file", "allowed_signers", "--json", cwd=empty)
    assert va.returncode == 0, va.stdout + va.stderr
    again_pull = inproc("archive", "pull", f"{ref}:r1", "--json", cwd=empty)
    assert again_pull.returncode == 2 and _json(again_pull)["code"] == "USAGE"  # never overwrites


def test_a_tampered_blob_in_registry_storage_is_refused_and_nothing_cached(
        shared: dict[str, Path], registry: Distribution, tmp_path: Path) -> None:
    ref = f"oci://{registry.host}/team/tamper"
    p = inproc("archive", "push", str(shared["archive_file"]), ref, "--no-attestation",
               "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    blob = registry.blob_data(_json(p)["details"]["archive"]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    original = blob.read_bytes()
    blob.write_bytes(bytes(data))
    try:
        bad = inproc("archive", "pull", f"{ref}:r1", "-o", "x.zip", "--json", cwd=tmp_path)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        doc = _json(bad)
        assert doc["code"] == "REGISTRY_DIGEST_MISMATCH"
        assert doc["details"]["reason"] == "DIGEST"
        assert not (tmp_path / "x.zip").exists()
        assert doc["details"]["digest"].split(":")[1] not in _cache_blobs()
        tmp = Path(os.environ["HOME"]) / ".cache/catalytic/oci/tmp"
        assert not any(p.name.endswith(".part") for p in tmp.iterdir())
        v = inproc("verify", f"{ref}:r1", "--trust-file", str(shared["trust"]), "--json",
                   cwd=tmp_path)
        assert v.returncode == 1 and _json(v)["code"] == "REGISTRY_DIGEST_MISMATCH"
    finally:
        blob.write_bytes(original)
    ok = inproc("archive", "pull", f"{ref}:r1", "-o", "x.zip", "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_a_corrupted_cache_entry_is_fetched_again(shared: dict[str, Path],
                                                   registry: Distribution,
                                                   tmp_path: Path) -> None:
    ref = f"oci://{registry.host}/team/cache"
    assert inproc("archive", "push", str(shared["archive_file"]), ref, "--no-attestation",
                  cwd=tmp_path).returncode == 0
    first = inproc("archive", "pull", f"{ref}:r1", "-o", "a.zip", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    sha = hashlib.sha256(shared["archive_file"].read_bytes()).hexdigest()
    cached = Path(os.environ["HOME"]) / ".cache/catalytic/oci/blobs/sha256" / sha
    hit = inproc("archive", "pull", f"{ref}:r1", "-o", "b.zip", "--json", cwd=tmp_path)
    assert _json(hit)["details"]["bytes_downloaded"] < 10_000  # manifest only: a cache hit
    cached.chmod(0o644)
    with open(cached, "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    third = inproc("archive", "pull", f"{ref}:r1", "-o", "c.zip", "--json", cwd=tmp_path)
    assert third.returncode == 0, third.stdout + third.stderr
    assert _json(third)["details"]["bytes_downloaded"] > cached.stat().st_size
    assert (tmp_path / "c.zip").read_bytes() == shared["archive_file"].read_bytes()
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha


def test_credentials_from_a_docker_config_and_never_shown(shared: dict[str, Path],
                                                          tmp_path: Path) -> None:
    secret = "s3cr3t-Pa55word"
    (tmp_path / "authreg").mkdir()
    reg = Distribution(tmp_path / "authreg", {"ci": secret}).start()
    try:
        ref = f"oci://{reg.host}/team/private"
        none = inproc("archive", "push", str(shared["archive_file"]), ref, "--json",
                      cwd=tmp_path)
        assert none.returncode == 2 and _json(none)["code"] == "REGISTRY_AUTH"
        assert _json(none)["details"]["reason"] == "REQUIRED"
        encoded = base64.b64encode(f"ci:{secret}".encode()).decode()
        wrong = tmp_path / "wrong.json"
        wrong.write_text(json.dumps({"auths": {reg.host: {"auth": base64.b64encode(
            b"ci:not-it").decode()}}}))
        refused = inproc("archive", "push", str(shared["archive_file"]), ref,
                         "--registry-config", str(wrong), "--json", cwd=tmp_path)
        assert refused.returncode == 2 and _json(refused)["details"]["reason"] == "REFUSED"
        good = tmp_path / "config.json"
        good.write_text(json.dumps({"auths": {reg.host: {"auth": encoded}}}))
        outputs = [none.stdout + none.stderr, refused.stdout + refused.stderr]
        proc = catalytic("archive", "push", str(shared["archive_file"]), ref,
                         "--registry-config", str(good), cwd=tmp_path,
                         env={**os.environ, "CATALYTIC_DEBUG": "1"})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outputs.append(proc.stdout + proc.stderr)
        for args in (["archive", "pull", f"{ref}:r1", "-o", "p.zip", "--json"],
                     ["verify", f"{ref}:r1", "--trust-file", str(shared["trust"])]):
            done = inproc(*args, "--registry-config", str(good), cwd=tmp_path)
            assert done.returncode == 0, done.stdout + done.stderr
            outputs.append(done.stdout + done.stderr)
        # A replay in a repository writes a report and a chronicle record.
        os.environ["DOCKER_CONFIG"] = str(tmp_path)  # the same file, found the other way
        try:
            rp = inproc("replay", f"{ref}:r1", "--json", cwd=shared["repo"])
        finally:
            del os.environ["DOCKER_CONFIG"]
        assert rp.returncode == 0, rp.stdout + rp.stderr
        outputs.append(rp.stdout + rp.stderr)
        outputs.append(Path(_json(rp)["details"]["report_json"]).read_text())
        outputs.append((shared["repo"] / ".catalytic/chronicle.jsonl").read_text())
        for text in outputs:
            assert secret not in text and encoded not in text
    finally:
        reg.stop()


def test_validate_samples_a_repository_and_pulls_only_its_pick(
        shared: dict[str, Path], registry: Distribution, tmp_path: Path) -> None:
    ref = f"oci://{registry.host}/team/nightly"
    for tag in ("r1", "r1-again"):
        assert inproc("archive", "push", str(shared["archive_file"]), f"{ref}:{tag}",
                      cwd=tmp_path).returncode == 0
    blob_gets = registry.requests("GET", "/v2/team/nightly/blobs/")
    v = inproc("validate", ref, "--sample", "1", "--seed", "s", "--trust-file",
               str(shared["trust"]), "--json", cwd=shared["repo"])
    assert v.returncode == 0, v.stdout + v.stderr
    doc = _json(v)["details"]
    assert doc["candidates"] == 2 and len(doc["results"]) == 1
    assert doc["results"][0]["verdict"] == "exact"
    assert doc["results"][0]["source"].startswith(f"{ref}:r1")
    assert registry.requests("GET", "/v2/team/nightly/blobs/") == blob_gets + 1
