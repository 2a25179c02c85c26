"""Runs shared through an OCI registry (issue 31), against Debian's real `docker-registry`
(distribution 2.8, no referrers API) started here on a loopback port, and, for the referrers API
and faults a real registry will not produce on demand, the minimal registry in registries.py."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalytic_hooks.provenance.chronicle import read
from catalytic_hooks.registry.client import Client
from catalytic_hooks.registry.reference import parse

from .helpers import (
    archive_command_table,
    git,
    imported_by,
    inproc,
    needs_tool,
    take_files,
)
from .registries import (
    Distribution,
    LossyRelay,
    MiniRegistry,
    TokenServer,
    free_port,
    tls_files,
)
from .test_archive import _env, made  # noqa: F401 (the module fixture)

pytestmark = needs_tool(
    Path("/usr/bin/docker-registry").exists() or shutil.which("docker-registry") is not None,
    "docker-registry is not installed (.ci/run installs it)",
)


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_HEX = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def _json(proc: object) -> dict:
    return json.loads(proc.stdout)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    reg = Distribution(tmp_path_factory.mktemp("registry")).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def shared(
    made: dict[str, Path],  # noqa: F811 (the module fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """The archive with its attestation beside it, in a directory of their own."""
    d = tmp_path_factory.mktemp("shared")
    shutil.copyfile(made["archive"], d / "r1.catalytic.zip")
    a = inproc("attest", "r1.catalytic.zip", "--sign", str(made["key"]), "--json", cwd=d)
    assert a.returncode == 0, a.stdout + a.stderr
    return {
        **made,
        "dir": d,
        "archive_file": d / "r1.catalytic.zip",
        "attestation": d / "r1.intoto.json",
    }


def _pushed(shared: dict[str, Path], ref: str, *extra: str, cwd: Path) -> dict:
    """`archive push` of the shared archive to `ref`, which must succeed: its JSON details."""
    p = inproc("archive", "push", str(shared["archive_file"]), ref, "--json", *extra, cwd=cwd)
    assert p.returncode == 0, p.stdout + p.stderr
    return _json(p)["details"]


def _cache_blobs() -> list[str]:
    root = Path(os.environ["HOME"]) / ".cache/catalytic/oci/blobs/sha256"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def _manifest_via_registry(
    reg: Distribution, name: str, reference: str, media: str = OCI_MANIFEST
) -> dict:
    """A manifest or index read with the registry's own API (no code of ours)."""
    req = urllib.request.Request(
        f"http://{reg.host}/v2/{name}/manifests/{reference}", headers={"Accept": media}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _index_via_registry(reg: Distribution, name: str, subject: str) -> dict:
    """The fallback tag, read with the registry's own API."""
    return _manifest_via_registry(reg, name, f"sha256-{subject.split(':')[1]}", OCI_INDEX)


def test_push_then_everything_works_from_the_registry(
    shared: dict[str, Path], registry: Distribution, tmp_path: Path
) -> None:
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
    with urllib.request.urlopen(
        urllib.request.Request(
            f"http://{registry.host}/v2/team/runs/manifests/r1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
    ) as resp:
        m = json.loads(resp.read())
    assert m["artifactType"] == "application/vnd.catalytic.archive.v1+zip"
    assert m["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert m["layers"][0]["digest"] == f"sha256:{archive_sha}"
    ann = m["annotations"]
    assert ann["dev.catalytic.run.id"] == "r1"
    assert (
        ann["dev.catalytic.run.commit"] == git(shared["repo"], "rev-parse", "HEAD~1").stdout.strip()
    )
    assert len(ann["dev.catalytic.run.signer"]) == 64 and ann["org.opencontainers.image.created"]

    # The attestation, found through the registry's own API via the fallback tag.
    idx = _index_via_registry(registry, "team/runs", digest)
    assert idx["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [(d["digest"], d["artifactType"]) for d in idx["manifests"]] == [
        (info["attestation"]["digest"], "application/vnd.in-toto+json")
    ]

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
    v = inproc("verify", f"{ref}@{digest}", "--trust-file", "allowed_signers", "--json", cwd=empty)
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
    rb = inproc(
        "restore",
        "bundle",
        f"{ref}@{digest}",
        "--restore-root",
        str(out),
        "--trust-file",
        "allowed_signers",
        "--json",
        cwd=empty,
    )
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert (out / "outputs/sample.txt").read_bytes() == (
        shared["repo"] / "outputs/sample.txt"
    ).read_bytes()
    assert sorted(x.name for x in empty.iterdir()) == ["allowed_signers", "out", "replays"]

    # Pull: byte-identical, with the attestation beside it, which verifies.
    got = inproc("archive", "pull", f"{ref}:r1", "--json", cwd=empty)
    assert got.returncode == 0, got.stdout + got.stderr
    assert (empty / "r1.catalytic.zip").read_bytes() == shared["archive_file"].read_bytes()
    assert (empty / "r1.intoto.json").read_bytes() == shared["attestation"].read_bytes()
    va = inproc(
        "verify",
        "r1.catalytic.zip",
        "--attestation",
        "r1.intoto.json",
        "--trust-file",
        "allowed_signers",
        "--json",
        cwd=empty,
    )
    assert va.returncode == 0, va.stdout + va.stderr
    again_pull = inproc("archive", "pull", f"{ref}:r1", "--json", cwd=empty)
    assert again_pull.returncode == 2 and _json(again_pull)["code"] == "USAGE"  # never overwrites


def test_a_tampered_blob_in_registry_storage_is_refused_and_nothing_cached(
    shared: dict[str, Path], registry: Distribution, tmp_path: Path
) -> None:
    ref = f"oci://{registry.host}/team/tamper"
    pushed = _pushed(shared, ref, "--no-attestation", cwd=tmp_path)
    blob = registry.blob_data(pushed["archive"]["digest"])
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
        v = inproc(
            "verify", f"{ref}:r1", "--trust-file", str(shared["trust"]), "--json", cwd=tmp_path
        )
        assert v.returncode == 1 and _json(v)["code"] == "REGISTRY_DIGEST_MISMATCH"
    finally:
        blob.write_bytes(original)
    ok = inproc("archive", "pull", f"{ref}:r1", "-o", "x.zip", "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_a_corrupted_cache_entry_is_fetched_again(
    shared: dict[str, Path], registry: Distribution, tmp_path: Path
) -> None:
    ref = f"oci://{registry.host}/team/cache"
    _pushed(shared, ref, "--no-attestation", cwd=tmp_path)
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


def test_a_pulled_file_linked_to_the_cache_does_not_open_the_cache_to_others(
    shared: dict[str, Path], registry: Distribution, tmp_path: Path
) -> None:
    """`pull -o` hard-links the checked cache entry: under a group-writable umask, widening
    the link's mode would make the cached inode writable by the group."""
    ref = f"oci://{registry.host}/team/modes"
    _pushed(shared, ref, "--no-attestation", cwd=tmp_path)
    old = os.umask(0o002)
    try:
        got = inproc("archive", "pull", f"{ref}:r1", "-o", "m.zip", "--json", cwd=tmp_path)
    finally:
        os.umask(old)
    assert got.returncode == 0, got.stdout + got.stderr
    sha = hashlib.sha256(shared["archive_file"].read_bytes()).hexdigest()
    cached = Path(os.environ["HOME"]) / ".cache/catalytic/oci/blobs/sha256" / sha
    pulled = tmp_path / "m.zip"
    assert pulled.read_bytes() == shared["archive_file"].read_bytes()
    if pulled.stat().st_ino == cached.stat().st_ino:  # linked (same file system)
        assert pulled.stat().st_mode & 0o777 == 0o600
    assert cached.stat().st_mode & 0o077 == 0


def test_archive_pull_option_table_is_the_typer_commands() -> None:
    from catalytic_hooks.cli.fastpath import ARCHIVE_PULL_OPTIONS, parse_archive_pull

    table, arguments = archive_command_table("pull")
    assert arguments == ["reference"]
    assert table == ARCHIVE_PULL_OPTIONS
    for unusual in (["--help"], [], ["oci://h/n:t", "extra"], ["oci://h/n:t", "-o"], ["-x"]):
        assert parse_archive_pull(unusual) is None, unusual
    parsed = parse_archive_pull(["oci://h/n:t", "--output=o.zip", "--insecure"])
    assert (parsed.reference, parsed.output, parsed.insecure) == (
        "oci://h/n:t",
        Path("o.zip"),
        True,
    )


def test_archive_push_option_table_is_the_typer_commands() -> None:
    from catalytic_hooks.cli.fastpath import ARCHIVE_PUSH_OPTIONS, parse_archive_push

    table, arguments = archive_command_table("push")
    assert arguments == ["source", "target"]
    assert table == ARCHIVE_PUSH_OPTIONS
    for unusual in (
        ["--help"],
        [],
        ["a.zip"],
        ["a.zip", "oci://h/n", "extra"],
        ["a.zip", "oci://h/n", "--chunk-size", "0"],  # below Typer's min: Typer refuses it
        ["a.zip", "oci://h/n", "--chunk-size", "x"],
        ["a.zip", "oci://h/n", "--attestation"],
        ["-x"],
    ):
        assert parse_archive_push(unusual) is None, unusual
    parsed = parse_archive_push(["a.zip", "--chunk-size=3", "oci://h/n:t", "--no-attestation"])
    assert (parsed.source, parsed.target, parsed.chunk_size, parsed.no_attestation) == (
        Path("a.zip"),
        "oci://h/n:t",
        3,
        True,
    )


PUSH_CASES = [
    ["FILE", "REF", "--json"],
    ["FILE", "REF", "--no-attestation", "--chunk-size", "1"],
    ["FILE", "REF", "--chunk-size", "0"],
    ["FILE", "oci://127.0.0.1:1/team/none", "--json"],
    ["MISSING", "REF"],
]


@pytest.mark.parametrize("argv", PUSH_CASES, ids=[" ".join(c) for c in PUSH_CASES])
def test_archive_push_fast_and_typer_paths_agree(
    shared: dict[str, Path], registry: Distribution, tmp_path: Path, argv: list[str]
) -> None:
    """The fast path (no Typer) and the Typer command, each into a repository of its own: the
    same exit code and output but for the repository's name, and the same artifact pushed."""
    from .helpers import catalytic

    results = []
    for fast in (True, False):
        env = dict(os.environ)
        if not fast:
            env["CATALYTIC_NO_FASTPATH"] = "1"
        case = hashlib.sha256(" ".join(argv).encode()).hexdigest()[:8]
        ref = f"oci://{registry.host}/team/push-{'fast' if fast else 'typer'}-{case}"
        line = [
            ref if a == "REF" else str(shared["archive_file"]) if a == "FILE" else a for a in argv
        ]
        proc = catalytic("archive", "push", *line, cwd=tmp_path, env=env)
        results.append(
            (proc.returncode, proc.stdout.replace(ref, "REF"), proc.stderr.replace(ref, "REF"))
        )
    assert results[0] == results[1]
    code, stdout, stderr = results[0]
    if argv[0] == "MISSING":
        assert (code, stdout) == (2, "") and "PATH_INVALID" in stderr
    elif "127.0.0.1:1" in argv[1]:
        assert code == 2 and json.loads(stdout)["code"] == "REGISTRY_UNREACHABLE"
    elif "0" in argv:  # Typer's own refusal of a chunk size below its minimum
        assert (code, stdout) == (2, "") and "--chunk-size" in stderr
    else:
        assert code == 0 and "REF@sha256:" in stdout, stderr
        assert ("attestation" in stdout) == ("--no-attestation" not in argv)


def test_the_push_fast_path_imports_no_cli_framework(
    shared: dict[str, Path], registry: Distribution, tmp_path: Path
) -> None:
    ref = f"oci://{registry.host}/team/lean-push"
    loaded = imported_by("archive", "push", str(shared["archive_file"]), ref, cwd=tmp_path)
    for heavy in ("typer", "rich", "click"):
        assert heavy not in loaded, heavy
    digest = json.loads(inproc("archive", "pull", ref + ":r1", "--json", cwd=tmp_path).stdout)
    assert digest["ok"], digest


PULL_CASES = [
    ["REF", "-o", "out.zip", "--json"],
    ["--output=out.zip", "REF", "--no-attestations", "--insecure"],
    ["REF", "-o", "EXISTS", "--json"],
    ["oci://127.0.0.1:1/team/none:r1", "-o", "out.zip", "--json"],
]


@pytest.mark.parametrize("argv", PULL_CASES, ids=[" ".join(c) for c in PULL_CASES])
def test_archive_pull_fast_and_typer_paths_agree(
    shared: dict[str, Path], registry: Distribution, tmp_path: Path, argv: list[str]
) -> None:
    """The fast path (no Typer) and the Typer command: the same answer, the same files."""
    from .helpers import catalytic

    ref = f"oci://{registry.host}/team/fast:r1"
    _pushed(shared, ref, cwd=tmp_path)
    (tmp_path / "EXISTS").write_bytes(b"not an archive")
    results = []
    for fast in (True, False):
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / f"cache-{fast}")}
        if not fast:
            env["CATALYTIC_NO_FASTPATH"] = "1"
        line = [ref if a == "REF" else a for a in argv]
        proc = catalytic("archive", "pull", *line, cwd=tmp_path, env=env)
        written = take_files(
            tmp_path, ("out.zip", "r1.catalytic.zip", "out.intoto.json", "r1.intoto.json")
        )
        results.append((proc.returncode, proc.stdout, proc.stderr, written))
    assert results[0] == results[1]
    assert (tmp_path / "EXISTS").read_bytes() == b"not an archive"
    code, stdout, _, written = results[0]
    if "EXISTS" in argv or "127.0.0.1:1" in argv[0]:
        assert code != 0 and not written
    else:
        assert code == 0 and stdout
        archive = next(v for k, v in written.items() if k.endswith(".zip"))
        assert archive == shared["archive_file"].read_bytes()
        assert ("r1.intoto.json" in written or "out.intoto.json" in written) == (
            "--no-attestations" not in argv
        )


def test_the_pull_fast_path_imports_no_cli_framework(
    shared: dict[str, Path], registry: Distribution, tmp_path: Path
) -> None:
    ref = f"oci://{registry.host}/team/lean:r1"
    _pushed(shared, ref, cwd=tmp_path)
    loaded = imported_by("archive", "pull", ref, cwd=tmp_path)
    assert (tmp_path / "r1.catalytic.zip").read_bytes() == shared["archive_file"].read_bytes()
    for heavy in ("typer", "rich", "click", "cryptography"):
        assert heavy not in loaded, heavy


def test_credentials_from_a_docker_config_and_never_shown(
    shared: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-Pa55word"
    (tmp_path / "authreg").mkdir()
    reg = Distribution(tmp_path / "authreg", {"ci": secret}).start()
    try:
        ref = f"oci://{reg.host}/team/private"
        none = inproc("archive", "push", str(shared["archive_file"]), ref, "--json", cwd=tmp_path)
        assert none.returncode == 2 and _json(none)["code"] == "REGISTRY_AUTH"
        assert _json(none)["details"]["reason"] == "REQUIRED"
        encoded = base64.b64encode(f"ci:{secret}".encode()).decode()
        wrong = tmp_path / "wrong.json"
        wrong.write_text(
            json.dumps({"auths": {reg.host: {"auth": base64.b64encode(b"ci:not-it").decode()}}})
        )
        refused = inproc(
            "archive",
            "push",
            str(shared["archive_file"]),
            ref,
            "--registry-config",
            str(wrong),
            "--json",
            cwd=tmp_path,
        )
        assert refused.returncode == 2 and _json(refused)["details"]["reason"] == "REFUSED"
        good = tmp_path / "config.json"
        good.write_text(json.dumps({"auths": {reg.host: {"auth": encoded}}}))
        outputs = [none.stdout + none.stderr, refused.stdout + refused.stderr]
        monkeypatch.setenv("CATALYTIC_DEBUG", "1")
        for args in (
            ["archive", "push", str(shared["archive_file"]), ref],
            ["archive", "pull", f"{ref}:r1", "-o", "p.zip", "--json"],
        ):
            done = inproc(*args, "--registry-config", str(good), cwd=tmp_path)
            assert done.returncode == 0, done.stdout + done.stderr
            outputs.append(done.stdout + done.stderr)
        # In a repository a replay writes a report and a chronicle record; DOCKER_CONFIG finds
        # the same file the other way.
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
        rp = inproc("replay", f"{ref}:r1", "--json", cwd=shared["repo"])
        assert rp.returncode == 0, rp.stdout + rp.stderr
        outputs.append(rp.stdout + rp.stderr)
        outputs.append(Path(_json(rp)["details"]["report_json"]).read_text())
        chronicle = shared["repo"] / ".catalytic/chronicle.jsonl"
        assert read(chronicle)[-1]["kind"] == "replay"
        outputs.append(chronicle.read_text())
        for text in outputs:
            assert secret not in text and encoded not in text
    finally:
        reg.stop()


def test_token_authentication_with_a_password_or_an_identity_token_never_shown(
    shared: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _token_case(shared, tmp_path, monkeypatch, full=False)


@pytest.mark.slow
def test_token_authentication_refusals_verify_and_the_chronicle(
    shared: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _token_case(shared, tmp_path, monkeypatch, full=True)


def _token_case(
    shared: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, full: bool
) -> None:
    """The real registry with `auth: token` in front of a token service on loopback: a password
    goes only to the token service as Basic credentials, an identity token (`docker login`'s
    `identitytoken`, an OAuth refresh token) only in the POST form of the refresh-token grant,
    and the bearer tokens issued only to the registry; none of them is ever shown."""
    password, identity = "pa55-Word-tok", "refresh-Id3ntity-tok"
    tokens = TokenServer({"ci": password}, {identity: "ci"}).start()
    (tmp_path / "tokreg").mkdir()
    reg = Distribution(tmp_path / "tokreg", token=tokens).start()

    def config(name: str, entry: dict[str, str]) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps({"auths": {reg.host: entry}}))
        return path

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    try:
        ref = f"oci://{reg.host}/team/tok"
        push = ["archive", "push", str(shared["archive_file"]), ref, "--json"]
        outputs = []
        for cfg, reason in (
            (None, "REQUIRED"),
            (config("wrong.json", {"auth": b64("ci:not-it")}), "REFUSED"),
            (config("stale.json", {"auth": b64("<token>:"), "identitytoken": "stale"}), "REFUSED"),
        )[: 3 if full else 1]:
            extra = ["--registry-config", str(cfg)] if cfg else []
            bad = inproc(*push, *extra, cwd=tmp_path)
            assert (bad.returncode, _json(bad)["code"]) == (2, "REGISTRY_AUTH"), bad.stdout
            assert _json(bad)["details"]["reason"] == reason
            outputs.append(bad.stdout + bad.stderr)
        monkeypatch.setenv("CATALYTIC_DEBUG", "1")
        with_password = config("password.json", {"auth": b64(f"ci:{password}")})
        seen_before = len(tokens.seen)
        done = inproc(*push, "--registry-config", str(with_password), cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done.stdout + done.stderr)
        assert _json(done)["details"]["attestation"]["via"] == "fallback-tag"
        asked = tokens.seen[seen_before:]
        assert asked and all(
            (s["method"], s["authorization"]) == ("GET", f"Basic {b64(f'ci:{password}')}")
            for s in asked
        )

        # The identity token: pull and verify --attested, then a replay in the repository
        # (which writes a report and a chronicle record), found through DOCKER_CONFIG.
        seen_before = len(tokens.seen)
        with_identity = config("config.json", {"auth": b64("<token>:"), "identitytoken": identity})
        for args in (
            ["archive", "pull", f"{ref}:r1", "-o", "p.zip", "--json"],
            ["verify", f"{ref}:r1", "--attested", "--trust-file", str(shared["trust"])],
        )[: 2 if full else 1]:
            got = inproc(*args, "--registry-config", str(with_identity), cwd=tmp_path)
            assert got.returncode == 0, got.stdout + got.stderr
            outputs.append(got.stdout + got.stderr)
        assert (tmp_path / "p.zip").read_bytes() == shared["archive_file"].read_bytes()
        if full:
            monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
            rp = inproc("replay", f"{ref}:r1", "--json", cwd=shared["repo"])
            assert rp.returncode == 0, rp.stdout + rp.stderr
            report = Path(_json(rp)["details"]["report_json"]).read_text()
            outputs += [rp.stdout + rp.stderr, report]
            outputs.append((shared["repo"] / ".catalytic/chronicle.jsonl").read_text())
        grants = tokens.seen[seen_before:]
        assert grants and all(s["method"] == "POST" and s["path"] == "/token" for s in grants)
        for s in grants:
            form = json.loads(s["form"])
            assert form["grant_type"] == "refresh_token" and form["refresh_token"] == identity
            assert form["service"] == TokenServer.service and form["client_id"] == "catalytic"
            assert form["scope"] == "repository:team/tok:pull" and not s["authorization"]

        secrets = [password, identity, b64(f"ci:{password}"), *tokens.issued]
        assert len(tokens.issued) == (5 if full else 3)  # push: pull, then push scope
        for text in outputs:
            for secret in secrets:
                assert secret not in text
        registry_log = reg.log.read_text()
        assert password not in registry_log and identity not in registry_log
    finally:
        reg.stop()
        tokens.stop()


def test_validate_samples_a_repository_and_pulls_only_its_pick(
    shared: dict[str, Path], registry: Distribution, tmp_path: Path
) -> None:
    ref = f"oci://{registry.host}/team/nightly"
    for tag in ("r1", "r1-again"):
        assert (
            inproc(
                "archive", "push", str(shared["archive_file"]), f"{ref}:{tag}", cwd=tmp_path
            ).returncode
            == 0
        )
    blob_gets = registry.requests("GET", "/v2/team/nightly/blobs/")
    v = inproc(
        "validate",
        ref,
        "--sample",
        "1",
        "--seed",
        "s",
        "--trust-file",
        str(shared["trust"]),
        "--json",
        cwd=shared["repo"],
    )
    assert v.returncode == 0, v.stdout + v.stderr
    doc = _json(v)["details"]
    assert doc["candidates"] == 2 and len(doc["results"]) == 1
    assert doc["results"][0]["verdict"] == "exact"
    assert doc["results"][0]["source"].startswith(f"{ref}:r1")
    assert registry.requests("GET", "/v2/team/nightly/blobs/") == blob_gets + 1


# -- faults, on the minimal registry (which serves them on demand) -------------------------------


@pytest.fixture
def mini() -> Iterator[MiniRegistry]:
    reg = MiniRegistry().start()
    yield reg
    reg.stop()


def _push_mini(shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path, *extra: str) -> dict:
    return _pushed(shared, f"oci://{mini.host}/t/runs", *extra, cwd=tmp_path)


def _nothing_kept(tmp_path: Path) -> None:
    root = Path(os.environ["HOME"]) / ".cache/catalytic/oci"
    assert not any(p.name.endswith(".part") for p in (root / "tmp").glob("*"))
    assert not (tmp_path / "out.zip").exists()


def test_the_referrers_api_is_used_where_the_registry_has_it(
    shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    info = _push_mini(shared, mini, tmp_path)
    assert info["attestation"]["via"] == "referrers-api"
    assert not any(t.startswith("sha256-") for t in mini.state.tags)  # no fallback tag
    got = inproc(
        "archive", "pull", f"oci://{mini.host}/t/runs:r1", "-o", "out.zip", "--json", cwd=tmp_path
    )
    assert got.returncode == 0, got.stdout + got.stderr
    assert (tmp_path / "out.intoto.json").read_bytes() == shared["attestation"].read_bytes()


FAULTS = {
    "flipped-byte": ("flip", "REGISTRY_DIGEST_MISMATCH", "DIGEST"),
    "truncated-body": ("truncate", "REGISTRY_DIGEST_MISMATCH", "TRUNCATED"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_bad_blob_bytes_are_refused_and_nothing_is_cached(
    fault: str, shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    kind, code, reason = FAULTS[fault]
    info = _push_mini(shared, mini, tmp_path, "--no-attestation")
    mini.state.faults[kind] = {info["archive"]["digest"]}
    bad = inproc(
        "archive", "pull", f"oci://{mini.host}/t/runs:r1", "-o", "out.zip", "--json", cwd=tmp_path
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert (_json(bad)["code"], _json(bad)["details"]["reason"]) == (code, reason)
    assert info["archive"]["digest"].split(":")[1] not in _cache_blobs()
    _nothing_kept(tmp_path)


def _planted(
    mini: MiniRegistry, body: bytes, media: str = "application/vnd.oci.image.manifest.v1+json"
) -> str:
    mini.state.faults.setdefault("manifest", {})["bad"] = (body, media)
    return f"oci://{mini.host}/t/runs:bad"


HELM = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {
        "mediaType": "application/vnd.cncf.helm.config.v1+json",
        "digest": "sha256:" + "0" * 64,
        "size": 2,
    },
    "layers": [
        {
            "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            "digest": "sha256:" + "1" * 64,
            "size": 10,
        }
    ],
}
MANIFESTS = {
    "another-artifact-type": (json.dumps(HELM).encode(), "ARTIFACT_TYPE"),
    "huge": (b"{" + b" " * (5 * 1024 * 1024) + b"}", "TOO_LARGE"),
    "not-json": (b'{"schemaVersion": 2,', "MALFORMED"),
    "duplicate-keys": (b'{"schemaVersion": 2, "schemaVersion": 2}', "MALFORMED"),
    "two-layers": (
        json.dumps(
            {
                **HELM,
                "artifactType": "application/vnd.catalytic.archive.v1+zip",
                "layers": HELM["layers"] * 2,
            }
        ).encode(),
        "LAYERS",
    ),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_a_bad_manifest_is_refused(case: str, mini: MiniRegistry, tmp_path: Path) -> None:
    body, reason = MANIFESTS[case]
    bad = inproc("archive", "pull", _planted(mini, body), "-o", "out.zip", "--json", cwd=tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert (_json(bad)["code"], _json(bad)["details"]["reason"]) == ("REGISTRY_INVALID", reason)
    assert not (tmp_path / "out.zip").exists()


def test_a_tag_moved_after_a_digest_was_pinned(
    shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    info = _push_mini(shared, mini, tmp_path)
    mini.state.tags["r1"] = info["attestation"]["digest"]  # someone re-tagged r1
    moved = inproc(
        "archive",
        "pull",
        f"oci://{mini.host}/t/runs:r1@{info['digest']}",
        "-o",
        "out.zip",
        "--json",
        cwd=tmp_path,
    )
    assert moved.returncode == 1 and _json(moved)["code"] == "REGISTRY_TAG_MOVED"
    pinned = inproc(
        "archive",
        "pull",
        f"oci://{mini.host}/t/runs@{info['digest']}",
        "-o",
        "out.zip",
        "--json",
        cwd=tmp_path,
    )
    assert pinned.returncode == 0, pinned.stdout  # the digest alone still pins those bytes


@pytest.mark.parametrize("head", ["bare", "405"])
def test_a_tag_pinned_to_its_digest_is_checked_without_the_digest_header(
    head: str, shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    """`:TAG@sha256:` on a registry whose HEAD omits `Docker-Content-Digest` (the spec says
    SHOULD) or refuses HEAD: the tag's manifest is fetched and hashed instead. Before the fix
    the missing header read as "the tag now names nothing" (REGISTRY_TAG_MOVED) and the 405 as
    a failure. A tag that did move is still refused."""
    info = _push_mini(shared, mini, tmp_path)
    mini.state.faults["head"] = head
    ref = f"oci://{mini.host}/t/runs:r1@{info['digest']}"
    got = inproc("archive", "pull", ref, "-o", "out.zip", "--json", cwd=tmp_path)
    assert got.returncode == 0, got.stdout + got.stderr
    assert (tmp_path / "out.zip").read_bytes() == shared["archive_file"].read_bytes()
    mini.state.tags["r1"] = info["attestation"]["digest"]  # someone re-tagged r1
    moved = inproc("archive", "pull", ref, "-o", "again.zip", "--json", cwd=tmp_path)
    doc = _json(moved)
    assert (moved.returncode, doc["code"]) == (1, "REGISTRY_TAG_MOVED"), doc
    assert doc["details"]["now"] == info["attestation"]["digest"]
    assert not (tmp_path / "again.zip").exists()


def test_unreachable_unknown_and_bad_references(mini: MiniRegistry, tmp_path: Path) -> None:
    port = free_port()
    cases = [
        (f"oci://127.0.0.1:{port}/t/runs:r1", 2, "REGISTRY_UNREACHABLE"),
        (f"oci://{mini.host}/t/runs:nope", 2, "REGISTRY_NOT_FOUND"),
        (f"oci://{mini.host}/T/Runs:r1", 2, "USAGE"),
        (f"oci://{mini.host}/t/runs", 2, "USAGE"),
        ("oci://user:pw@host/t:r1", 2, "USAGE"),
    ]
    for ref, rc, code in cases:
        got = inproc("archive", "pull", ref, "--json", cwd=tmp_path)
        assert (got.returncode, _json(got)["code"]) == (rc, code), (ref, got.stdout)


def test_plain_http_only_for_loopback_or_insecure() -> None:
    from catalytic_hooks.registry.client import Client

    assert Client(parse("oci://127.0.0.1:5000/a:b")).scheme == "http"
    assert Client(parse("oci://localhost/a:b")).scheme == "http"
    assert Client(parse("oci://[::1]:5000/a:b")).scheme == "http"
    assert Client(parse("oci://registry.example.com/a:b")).scheme == "https"
    assert Client(parse("oci://10.0.0.1:5000/a:b"), insecure=True).scheme == "http"


def test_an_interrupted_pull_leaves_nothing_that_is_used(
    shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    """A pull killed mid-blob: its partial file is never taken for the blob."""
    info = _push_mini(shared, mini, tmp_path, "--no-attestation")
    digest = info["archive"]["digest"]
    mini.state.faults["stall"] = {digest}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "catalytic_hooks",
            "archive",
            "pull",
            f"oci://{mini.host}/t/runs:r1",
            "-o",
            "out.zip",
        ],
        cwd=tmp_path,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert mini.state.stalled.wait(60), "the pull never reached the blob"
    root = Path(os.environ["HOME"]) / ".cache/catalytic/oci"
    deadline = time.monotonic() + 60
    while not list((root / "tmp").glob("*.part")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    mini.state.faults.clear()
    mini.state.release.set()
    assert list((root / "tmp").glob("*.part"))  # the half download, left by the killed pull
    assert _cache_blobs() in ([], [EMPTY_HEX]) and not (tmp_path / "out.zip").exists()
    again = inproc(
        "archive", "pull", f"oci://{mini.host}/t/runs:r1", "-o", "out.zip", "--json", cwd=tmp_path
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert (tmp_path / "out.zip").read_bytes() == shared["archive_file"].read_bytes()


def _started(args: list[str], cwd: Path, **env: str) -> subprocess.Popen[str]:
    """The command line in a process of its own (to be signalled), its stderr kept."""
    return subprocess.Popen(
        [sys.executable, "-m", "catalytic_hooks", *args],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [
        (signal.SIGINT, 130, "interrupted"),
        (signal.SIGTERM, 143, "interrupted by SIGTERM"),
        (signal.SIGHUP, 129, "interrupted by SIGHUP"),
    ],
)
def test_a_pull_stopped_by_a_signal_cleans_up_and_says_so(
    sig: int, code: int, said: str, shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    """Ctrl-C, `timeout`/`docker stop`/a cancelled CI job (SIGTERM) and a closed terminal
    (SIGHUP) mid-blob: the same cleanup (the `.part` download removed), the exit status a shell
    reports (128 + the signal), one line saying why. Before the fix SIGTERM and SIGHUP killed
    the pull where it stood, leaving its `.part` of up to 4 GiB."""
    info = _push_mini(shared, mini, tmp_path, "--no-attestation")
    mini.state.faults["stall"] = {info["archive"]["digest"]}
    proc = _started(["archive", "pull", f"oci://{mini.host}/t/runs:r1", "-o", "out.zip"], tmp_path)
    try:
        assert mini.state.stalled.wait(60), "the pull never reached the blob"
        root = Path(os.environ["HOME"]) / ".cache/catalytic/oci"
        deadline = time.monotonic() + 60
        while not list((root / "tmp").glob("*.part")) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        mini.state.release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == said, err
    assert "Traceback" not in err
    assert list((root / "tmp").iterdir()) == [] and not (tmp_path / "out.zip").exists()


def _delivered(pid: int, sig: int) -> None:
    """Until no thread of `pid` has `sig` pending (/proc/PID/status: SigPnd, ShdPnd): the
    process has taken it, and the thread it woke runs its handler next."""
    bit = 1 << (sig - 1)
    deadline = time.monotonic() + 60
    while True:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        if not (int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)) & bit:
            return
        assert time.monotonic() < deadline, f"process {pid} never took signal {sig}"
        time.sleep(0.001)


def _validating(
    shared: dict[str, Path], mini: MiniRegistry
) -> tuple[Path, bytes, subprocess.Popen[str]]:
    """`validate` of the minimal registry's repository, started: the chronicle, its bytes
    before, and the process."""
    chronicle = shared["repo"] / ".catalytic/chronicle.jsonl"
    before = chronicle.read_bytes() if chronicle.exists() else b""
    proc = _started(
        ["validate", f"oci://{mini.host}/t/runs", "--trust-file", str(shared["trust"])],
        shared["repo"],
    )
    return chronicle, before, proc


def test_an_interrupted_validate_starts_no_replay_after_it(
    shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    """Ctrl-C reaches only the main thread, while `validate` pulls in worker threads. The pick
    being pulled when it comes stops at the pull's next step and no replay starts; the
    validation ends 130 with nothing recorded. Before the fix the worker finished the pull,
    replayed the run and recorded it, and the process waited for all of it."""
    info = _push_mini(shared, mini, tmp_path, "--no-attestation")
    mini.state.faults["hold"] = {info["archive"]["digest"]}
    chronicle, before, proc = _validating(shared, mini)
    try:
        assert mini.state.stalled.wait(60), "validate never reached the blob"
        proc.send_signal(signal.SIGINT)
        _delivered(proc.pid, signal.SIGINT)  # the main thread woke with it: stop is being set
        mini.state.release.set()  # the whole blob now comes: the worker must stop anyway
        _, err = proc.communicate(timeout=60)
    finally:
        mini.state.release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted", err
    assert (chronicle.read_bytes() if chronicle.exists() else b"") == before


def test_ctrl_c_reaches_a_validate_pull_the_registry_never_answers(
    shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    """The worker waits for the headers of a blob the registry never answers. Before the fix
    Ctrl-C was acted on only when the socket's 60-second timeout ended that wait, and the pick
    was then recorded in the chronicle as a failed replay (REGISTRY_UNREACHABLE). Now the
    interrupt shuts the worker's socket down: the validation ends 130, the registry still
    holding its answer, with nothing recorded."""
    info = _push_mini(shared, mini, tmp_path, "--no-attestation")
    entered, release = threading.Event(), threading.Event()

    def withhold(path: str) -> tuple[int, dict[str, str], bytes]:
        entered.set()
        release.wait(120)
        return 500, {}, b""

    mini.state.faults["answers"] = {f"/v2/t/runs/blobs/{info['archive']['digest']}": withhold}
    chronicle, before, proc = _validating(shared, mini)
    try:
        assert entered.wait(60), "validate never asked for the blob"
        proc.send_signal(signal.SIGINT)
        _delivered(proc.pid, signal.SIGINT)
        # Well inside the 60-second socket timeout, which ended the wait before the fix.
        _, err = proc.communicate(timeout=30)
        assert not release.is_set()
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted", err
    assert (chronicle.read_bytes() if chronicle.exists() else b"") == before


def test_a_push_of_a_run_directory_stopped_by_sigterm_leaves_no_archive_behind(
    shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    """`archive push RUN_DIR` archives the run into a temporary directory first; SIGTERM
    during the upload (held by the registry) removes it, as Ctrl-C does. Before the fix that
    full copy of the archive stayed in the temporary directory for ever."""
    work = tmp_path / "tmp"
    work.mkdir()
    entered, release = threading.Event(), threading.Event()

    def hold(path: str) -> tuple[int, dict[str, str], bytes]:
        entered.set()  # the push is waiting for the registry to open its upload
        release.wait(60)
        return 500, {}, b""

    mini.state.faults["answers"] = {"/v2/t/x/blobs/uploads/": hold}
    run_dir, ref = str(shared["repo"] / "_runs/r1"), f"oci://{mini.host}/t/x"
    proc = _started(["archive", "push", run_dir, ref], tmp_path, TMPDIR=str(work))
    try:
        assert entered.wait(60), "the push never opened an upload"
        assert list(work.glob("catalytic-push-*/*.zip")), "the run was not archived first"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "interrupted by SIGTERM", err
    assert list(work.iterdir()) == []


# -- the kernel's move of a blob into the cache (Response.move_into) ---------------------------


def _blob_in(mini: MiniRegistry, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    mini.state.blobs[digest] = data
    return digest


def _client(mini: MiniRegistry, timeout: float = 60.0) -> Client:

    return Client(parse(f"oci://{mini.host}/t/runs:r1"), timeout=timeout)


def test_a_blob_of_many_steps_is_moved_whole_and_a_flip_in_any_step_refused(
    mini: MiniRegistry, tmp_path: Path
) -> None:
    """40 MiB (ten of the hashing thread's 4 MiB steps, the last one partial) over plain HTTP
    on loopback, which the kernel splices into the cache file: the bytes arrive whole, and a
    byte flipped deep in the blob is caught (the hash covers every step)."""
    from catalytic_hooks.core.errors import CatalyticError
    from catalytic_hooks.registry.cache import Cache

    data = os.urandom(40 * 1024 * 1024 + 12345)
    digest = _blob_in(mini, data)
    cache = Cache(tmp_path / "cache")
    with contextlib.closing(_client(mini)) as client:
        stored = cache.store(client.get_blob(digest, len(data)), digest, len(data))
    assert stored.read_bytes() == data
    bad = bytearray(data)
    bad[35 * 1024 * 1024 + 7] ^= 0x40
    mini.state.blobs[digest] = bytes(bad)  # the registry now serves other bytes for `digest`
    stored.unlink()
    with contextlib.closing(_client(mini)) as client, pytest.raises(CatalyticError) as refused:
        cache.store(client.get_blob(digest, len(data)), digest, len(data))
    assert refused.value.code.value == "REGISTRY_DIGEST_MISMATCH"
    assert refused.value.details["reason"] == "DIGEST"
    assert refused.value.details["actual"] == "sha256:" + hashlib.sha256(bad).hexdigest()
    assert not stored.exists() and list((tmp_path / "cache/tmp").iterdir()) == []


def test_a_download_cut_short_behind_the_hashing_thread_is_refused(tmp_path: Path) -> None:
    """The hashing thread reads back what the receiver says has landed; a file shorter than
    that (cut by another process of the same user) is a SIZE mismatch, never a digest of
    fewer bytes."""
    from catalytic_hooks.core.errors import CatalyticError
    from catalytic_hooks.registry.cache import _HashFile

    part = tmp_path / "blob.part"
    part.write_bytes(os.urandom(300 * 1024))
    fd = os.open(part, os.O_RDONLY)
    try:
        hashing = _HashFile(fd, 400 * 1024)
        hashing.landed(400 * 1024)
        with pytest.raises(CatalyticError) as cut:
            hashing.finish(400 * 1024)
    finally:
        os.close(fd)
    assert cut.value.code.value == "REGISTRY_DIGEST_MISMATCH"
    assert cut.value.details["reason"] == "SIZE"
    assert "cut to 307200 bytes" in cut.value.message


def test_a_blob_that_stops_coming_ends_at_the_timeout_with_nothing_cached(
    mini: MiniRegistry, tmp_path: Path
) -> None:
    """Half a 3 MiB blob, then silence on an open connection: the splice's wait ends at the
    client's timeout as TIMEOUT, and nothing is kept."""
    from catalytic_hooks.core.errors import CatalyticError
    from catalytic_hooks.registry.cache import Cache

    data = os.urandom(3 * 1024 * 1024)
    digest = _blob_in(mini, data)
    mini.state.faults["stall"] = {digest}
    cache = Cache(tmp_path / "cache")
    try:
        with (
            contextlib.closing(_client(mini, timeout=1.0)) as client,
            pytest.raises(CatalyticError) as stalled,
        ):
            cache.store(client.get_blob(digest, len(data)), digest, len(data))
    finally:
        mini.state.release.set()
    assert stalled.value.code.value == "REGISTRY_UNREACHABLE"
    assert stalled.value.details["reason"] == "TIMEOUT"
    assert not cache.path(digest).exists() and list((tmp_path / "cache/tmp").iterdir()) == []


def test_a_file_the_kernel_cannot_splice_into_gets_the_bytes_copied(
    mini: MiniRegistry, tmp_path: Path
) -> None:
    """splice(2) refuses a file opened for appending (EINVAL), as it refuses a file system
    without splice: the body already in the pipe and the rest are then copied, in order."""
    data = os.urandom(5 * 1024 * 1024 + 3)
    digest = _blob_in(mini, data)
    target = tmp_path / "appended"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    landed: list[int] = []
    try:
        with contextlib.closing(_client(mini)) as client:
            moved = client.get_blob(digest, len(data)).move_into(fd, len(data), landed.append)
    finally:
        os.close(fd)
    assert moved == len(data) and landed[-1] == len(data)
    assert target.read_bytes() == data


def test_a_disk_that_refuses_the_blob_is_an_io_error_with_nothing_kept(
    shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    """The cache's file system refusing the spliced bytes (RLIMIT_FSIZE: EFBIG past 16 KiB,
    as a full disk would refuse them without root and a mount): IO_ERROR, not a registry's
    fault nor a bug, and no partial file left in the cache."""
    import errno
    import resource

    info = _push_mini(shared, mini, tmp_path, "--no-attestation")
    assert info["archive"]["size"] > 32 * 1024  # past the limit, and past what is buffered

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    ref = f"oci://{mini.host}/t/runs:r1"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "catalytic_hooks",
            "archive",
            "pull",
            ref,
            "-o",
            "out.zip",
            "--json",
        ],
        cwd=tmp_path,
        preexec_fn=small_files,
        capture_output=True,
        text=True,
    )
    doc = json.loads(proc.stdout)
    assert (proc.returncode, doc["code"]) == (2, "IO_ERROR"), doc
    assert doc["details"].get("errno") == errno.EFBIG, doc
    assert "Traceback" not in proc.stderr
    assert info["archive"]["digest"].split(":")[1] not in _cache_blobs()
    _nothing_kept(tmp_path)


def test_an_output_where_no_file_can_be_made_is_an_io_error(
    shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    """`-o` in a directory where the kernel makes no file (/proc: the link and the copy
    both refused): IO_ERROR naming the path, not INTERNAL."""
    _push_mini(shared, mini, tmp_path, "--no-attestation")
    ref = f"oci://{mini.host}/t/runs:r1"
    got = inproc("archive", "pull", ref, "-o", "/proc/out.catalytic.zip", "--json", cwd=tmp_path)
    assert (got.returncode, _json(got)["code"]) == (2, "IO_ERROR"), got.stdout
    assert _json(got)["details"]["path"] == "/proc/out.catalytic.zip"


@pytest.mark.parametrize("closed", [1, 2])
def test_a_console_pull_with_stdout_or_stderr_closed_still_succeeds(
    closed: int, shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    """`catalytic archive pull ... >&-` (or `2>&-`): Python starts with that stream None, and
    the pull's quick exit (no interpreter teardown) must still end 0 with the file in place,
    as the interpreter's own exit does."""
    _push_mini(shared, mini, tmp_path, "--no-attestation")
    ref = f"oci://{mini.host}/t/runs:r1"
    proc = subprocess.run(
        [sys.executable, "-m", "catalytic_hooks", "archive", "pull", ref, "-o", "out.zip"],
        cwd=tmp_path,
        preexec_fn=lambda: os.close(closed),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL if closed == 2 else None,
        stderr=subprocess.PIPE if closed == 1 else None,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.zip").read_bytes() == shared["archive_file"].read_bytes()


# -- concurrent attachers on a registry without conditional writes -------------------------------


def _attach_concurrently(
    registry: Distribution, name: str, n: int, junk: str | None = None
) -> None:
    """`n` clients attach `n` different attestations to one archive manifest at once; the
    fallback index must list every one of them afterwards. With `junk`, the fallback tag holds
    something planted first (anyone who can push can write it): `entry`, an index whose entry
    describes nothing; `manifest`, no index at all (an image manifest). The attachers rewrite
    it with theirs alone."""
    import threading

    from catalytic_hooks.registry import artifact, referrers
    from catalytic_hooks.registry.client import OCI_MANIFEST, Client
    from catalytic_hooks.registry.push import ensure_blob

    ref = parse(f"oci://{registry.host}/{name}:subject")
    setup = Client(ref)
    ensure_blob(setup, artifact.EMPTY_DIGEST, 2, artifact.EMPTY_DATA)
    blob = artifact.descriptor_of(name.encode(), artifact.ARCHIVE_TYPE)
    ensure_blob(setup, blob.digest, blob.size, name.encode())
    subject = artifact.archive_manifest(
        blob,
        run_id=name.replace("/", "-"),
        commit=None,
        signer="0" * 64,
        bundle_root="0" * 64,
        created=None,
    )
    sdesc = artifact.descriptor_of(subject, OCI_MANIFEST, artifact_type=artifact.ARCHIVE_TYPE)
    setup.put_manifest("subject", subject, OCI_MANIFEST)
    if junk == "manifest":
        from catalytic_hooks.registry.reference import fallback_tag

        setup.put_manifest(fallback_tag(sdesc.digest), subject, OCI_MANIFEST)
    elif junk == "entry":
        from catalytic_hooks.registry.client import OCI_INDEX
        from catalytic_hooks.registry.reference import fallback_tag

        # Distribution checks an index's shape and that what it names exists, not the sizes
        # it declares: past what a referrer manifest may be, this entry describes nothing.
        entry = {"mediaType": OCI_MANIFEST, "digest": sdesc.digest, "size": 5 * 1024 * 1024}
        planted = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
        setup.put_manifest(fallback_tag(sdesc.digest), json.dumps(planted).encode(), OCI_INDEX)
    setup.close()
    barrier = threading.Barrier(n)
    digests: list[str] = []
    errors: list[BaseException] = []

    def attacher(i: int) -> None:
        try:
            client = Client(ref)
            env = json.dumps(
                {
                    "payloadType": "application/vnd.in-toto+json",
                    "payload": "",
                    "signatures": [],
                    "n": i,
                }
            ).encode()
            edesc = artifact.descriptor_of(env, artifact.DSSE_LAYER)
            ensure_blob(client, edesc.digest, edesc.size, env)
            m = artifact.attestation_manifest(edesc, sdesc, None)
            mdesc = artifact.descriptor_of(m, OCI_MANIFEST, artifact_type=artifact.ATTESTATION_TYPE)
            digests.append(mdesc.digest)
            barrier.wait()
            assert referrers.attach(client, m, mdesc, sdesc.digest) == "fallback-tag"
            client.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=attacher, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    listed = {d["digest"] for d in _index_via_registry(registry, name, sdesc.digest)["manifests"]}
    assert listed == set(digests) and len(listed) == n


def test_eight_concurrent_attachers_lose_no_referrer(registry: Distribution) -> None:
    _attach_concurrently(registry, "team/concurrent", 8)


@pytest.mark.parametrize("junk", ["entry", "manifest"])
def test_a_malformed_fallback_index_does_not_lock_out_attachers(
    registry: Distribution, junk: str
) -> None:
    """`manifest`: before the fix, a fallback tag holding no index at all made every later
    attach fail (REGISTRY_INVALID, MEDIA_TYPE)."""
    _attach_concurrently(registry, f"team/junk-{junk}", 2, junk=junk)


def test_a_fallback_tag_that_holds_no_index_hides_attestations_and_stops_nothing(
    shared: dict[str, Path], registry: Distribution, tmp_path: Path
) -> None:
    """Anyone who can push can put any manifest at the fallback tag `sha256-<hex>` (here the
    archive's own, with the registry's own API). Before the fix the list was then refused as
    a whole: `archive pull` and `verify --attested` ended in REGISTRY_INVALID and no attestation
    could be attached any more. Now the list is no referrers and one malformed entry: the pull
    succeeds, the verify finds nothing attached, and the next push rewrites the tag."""
    ref = f"oci://{registry.host}/team/planted"
    pushed = _pushed(shared, ref, "--no-attestation", cwd=tmp_path)
    digest = pushed["digest"]
    manifest = registry.blob_data(digest).read_bytes()  # distribution keeps manifests as blobs
    req = urllib.request.Request(
        f"http://{registry.host}/v2/team/planted/manifests/sha256-{digest.split(':')[1]}",
        data=manifest,
        method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201
    got = inproc("archive", "pull", f"{ref}:r1", "-o", "out.zip", "--json", cwd=tmp_path)
    assert got.returncode == 0, got.stdout + got.stderr
    doc = _json(got)["details"]
    assert (doc["attestations"], doc["referrers_malformed"]) == ([], 1)
    assert (tmp_path / "out.zip").read_bytes() == shared["archive_file"].read_bytes()
    rc, v = _verify_attested(f"{ref}@{digest}", shared, tmp_path)
    assert (rc, v["code"]) == (1, "ATTESTATION_MISSING")
    assert v["details"]["results"][0]["attestations_malformed"] == 1
    again = _pushed(shared, ref, cwd=tmp_path)
    assert again["attestation"]["via"] == "fallback-tag"
    listed = _index_via_registry(registry, "team/planted", digest)["manifests"]
    assert [d["digest"] for d in listed] == [again["attestation"]["digest"]]
    rc, v = _verify_attested(f"{ref}@{digest}", shared, tmp_path)
    assert (rc, v["code"]) == (0, "PASS"), v


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(20))
def test_eight_concurrent_attachers_twenty_trials(registry: Distribution, trial: int) -> None:
    _attach_concurrently(registry, f"team/trial{trial}", 8)


# -- verify --attested: the attestation attached in the registry, judged with the caller's trust -


def _forged(shared: dict[str, Path], tmp_path: Path, how: str) -> Path:
    """An envelope beside the archive that `archive push --attestation` accepts (it names run r1)
    but that must not verify: `flipped` (a signature byte changed), `other-key` (signed by a key
    the caller does not trust, about the same run), `other-subject` (signed by the run's own key,
    its subjects not the archive's outputs)."""
    from catalytic_hooks.bundle.attest import envelope
    from catalytic_hooks.bundle.keys import keygen, load_signer
    from catalytic_hooks.core.canonical import canonical_bytes

    doc = json.loads(shared["attestation"].read_bytes())
    stmt = json.loads(base64.b64decode(doc["payload"]))
    if how == "flipped":
        sig = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
        sig[0] ^= 1
        doc["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    elif how == "other-key":
        keygen(tmp_path / "stranger")
        doc = envelope(stmt, load_signer(tmp_path / "stranger"))
    else:
        stmt["subject"][0]["digest"]["sha256"] = "0" * 64
        doc = envelope(stmt, load_signer(shared["key"]))
    out = tmp_path / f"{how}.intoto.json"
    out.write_bytes(canonical_bytes(doc))
    return out


def _verify_attested(ref: str, shared: dict[str, Path], tmp_path: Path) -> tuple[int, dict]:
    v = inproc(
        "verify", ref, "--attested", "--trust-file", str(shared["trust"]), "--json", cwd=tmp_path
    )
    return v.returncode, _json(v)


def test_a_failed_attestation_is_never_recorded_as_a_passing_verify(
    shared: dict[str, Path], registry: Distribution, tmp_path: Path
) -> None:
    """The chronicle of the repository `verify --attested` runs in records the final verdict:
    a trusted archive with no attestation attached is a failed verify there too (the report
    draws its timeline from these records)."""
    ref = f"oci://{registry.host}/team/unattested"
    digest = _pushed(shared, ref, "--no-attestation", cwd=tmp_path)["digest"]
    caller = tmp_path / "caller"
    git(tmp_path, "init", "-q", str(caller))
    v = inproc(
        "verify",
        f"{ref}@{digest}",
        "--attested",
        "--trust-file",
        str(shared["trust"]),
        "--json",
        cwd=caller,
    )
    assert (v.returncode, _json(v)["code"]) == (1, "ATTESTATION_MISSING")
    last = read(caller / ".catalytic" / "chronicle.jsonl")[-1]
    assert last["kind"] == "verify"
    assert (last["data"]["ok"], last["data"]["code"]) == (False, "ATTESTATION_MISSING")
    assert last["data"]["run_ids"] == ["r1"]


def test_verify_attested_finds_the_attestation_through_the_fallback_tag(
    shared: dict[str, Path], registry: Distribution, tmp_path: Path
) -> None:
    ref = f"oci://{registry.host}/team/attested"
    digest = _pushed(shared, ref, "--no-attestation", cwd=tmp_path)["digest"]
    rc, doc = _verify_attested(f"{ref}@{digest}", shared, tmp_path)
    assert (rc, doc["code"]) == (1, "ATTESTATION_MISSING")
    human = inproc(
        "verify",
        f"{ref}@{digest}",
        "--attested",
        "--trust-file",
        str(shared["trust"]),
        cwd=tmp_path,
    )
    assert human.returncode == 1
    assert "REJECTED ATTESTATION_MISSING: no attestation attached to it verifies" in human.stdout
    assert doc["details"]["results"][0]["valid"]  # the bundle itself is fine
    assert doc["details"]["results"][0]["attestations"] == []

    # A forged attestation alone is refused with its own code; the real one beside it passes.
    forged = _forged(shared, tmp_path, "flipped")
    p = inproc(
        "archive",
        "push",
        str(shared["archive_file"]),
        ref,
        "--attestation",
        str(forged),
        "--json",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    bad = _json(p)["details"]["attestation"]["digest"]
    rc, doc = _verify_attested(f"{ref}@{digest}", shared, tmp_path)
    assert (rc, doc["code"]) == (1, "SIGNATURE_INVALID")
    good = inproc("archive", "push", str(shared["archive_file"]), ref, "--json", cwd=tmp_path)
    att = _json(good)["details"]["attestation"]
    assert att["via"] == "fallback-tag"
    rc, doc = _verify_attested(f"{ref}:r1", shared, tmp_path)
    assert (rc, doc["code"]) == (0, "PASS"), doc
    # The fallback index lists by digest; the search stops at the first that verifies.
    row = doc["details"]["results"][0]
    rows = [(a["digest"], a["valid"], a["code"]) for a in row["attestations"]]
    if bad < att["digest"]:
        assert rows == [(bad, False, "SIGNATURE_INVALID"), (att["digest"], True, "PASS")]
    else:
        assert rows == [(att["digest"], True, "PASS")] and row["attestations_unchecked"] == 1
    assert row["attestations"][-1]["via"] == "fallback-tag" and row["attestations"][-1]["trusted"]
    human = inproc(
        "verify", f"{ref}:r1", "--attested", "--trust-file", str(shared["trust"]), cwd=tmp_path
    )
    assert f"attestation {att['digest']} (fallback-tag): valid" in human.stdout


@pytest.mark.parametrize("how", ["other-key", "other-subject"])
def test_verify_attested_uses_the_callers_trust_and_the_archives_subjects(
    how: str, shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    forged = _forged(shared, tmp_path, how)
    info = _push_mini(shared, mini, tmp_path, "--attestation", str(forged))
    assert info["attestation"]["via"] == "referrers-api"
    rc, doc = _verify_attested(info["reference"], shared, tmp_path)
    code = {"other-key": "SIGNATURE_INVALID", "other-subject": "HASH_MISMATCH"}[how]
    assert (rc, doc["code"]) == (1, code), doc
    (row,) = doc["details"]["results"][0]["attestations"]
    assert (row["via"], row["valid"], row["code"]) == ("referrers-api", False, code)


def test_verify_attested_through_the_referrers_api(
    shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    info = _push_mini(shared, mini, tmp_path)
    rc, doc = _verify_attested(info["reference"], shared, tmp_path)
    assert (rc, doc["code"]) == (0, "PASS"), doc
    (row,) = doc["details"]["results"][0]["attestations"]
    assert row["via"] == "referrers-api" and row["valid"] and row["trusted"]
    assert row["digest"] == info["attestation"]["digest"]
    assert row["bundle_root"] == doc["details"]["results"][0]["bundle_root"]

    # A referrer the registry lists for this archive whose own subject is another manifest.
    from catalytic_hooks.registry import artifact

    real, media = mini.state.manifests[info["attestation"]["digest"]]
    m = json.loads(real)
    m["subject"]["digest"] = "sha256:" + "1" * 64
    body = json.dumps(m).encode()
    d = "sha256:" + hashlib.sha256(body).hexdigest()
    mini.state.manifests[d] = (body, media)
    mini.state.referrers[info["digest"]].insert(
        0,
        {
            "mediaType": media,
            "digest": d,
            "size": len(body),
            "artifactType": artifact.ATTESTATION_TYPE,
        },
    )
    rc, doc = _verify_attested(info["reference"], shared, tmp_path)
    assert (rc, doc["code"]) == (0, "PASS")
    rows = doc["details"]["results"][0]["attestations"]
    assert [(r["digest"], r["valid"], r["code"]) for r in rows] == [
        (d, False, "REGISTRY_INVALID"),
        (info["attestation"]["digest"], True, "PASS"),
    ]

    # --attested is for registry references only.
    rc, doc = _verify_attested(str(shared["archive_file"]), shared, tmp_path)
    assert (rc, doc["code"]) == (2, "USAGE")


# -- chunked uploads -----------------------------------------------------------------------------


def _big_file(path: Path, size: int) -> str:
    """`size` bytes that differ from chunk to chunk (a misplaced chunk changes the digest)."""
    h = hashlib.sha256()
    with open(path, "wb") as fh:
        block = 0
        while fh.tell() < size:
            data = hashlib.sha256(str(block).encode()).digest() * 2048  # 64 KiB
            data = data[: size - fh.tell()]
            fh.write(data)
            h.update(data)
            block += 1
    return "sha256:" + h.hexdigest()


def test_a_large_blob_goes_up_in_patch_chunks_with_memory_flat(
    registry: Distribution, tmp_path: Path
) -> None:
    import tracemalloc

    from catalytic_hooks.registry.client import Client

    size = 24 * 1024 * 1024 + 12345  # three whole chunks and a short one
    path = tmp_path / "blob"
    digest = _big_file(path, size)
    client = Client(parse(f"oci://{registry.host}/team/chunked:x"))
    client.chunk_size = 8 * 1024 * 1024
    patches = registry.requests("PATCH", "/v2/team/chunked/blobs/uploads/")
    tracemalloc.start()
    try:
        client.upload(digest, path, size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        client.close()
    assert peak < 4 * 1024 * 1024, peak  # http.client's 1 MiB blocks, never a chunk
    assert registry.requests("PATCH", "/v2/team/chunked/blobs/uploads/") == patches + 4
    assert client.counters.blob_uploads == 1 and client.counters.bytes_up == size
    assert registry.blob_data(digest).read_bytes() == path.read_bytes()


def test_chunks_fall_back_to_one_put_where_the_registry_has_no_patch(
    mini: MiniRegistry, tmp_path: Path
) -> None:
    from catalytic_hooks.registry.client import Client

    path = tmp_path / "blob"
    digest = _big_file(path, 3 * 1024 * 1024)
    client = Client(parse(f"oci://{mini.host}/t/runs:x"))
    client.chunk_size = 1024 * 1024
    client.upload(digest, path, 3 * 1024 * 1024)  # the minimal registry answers PATCH 501
    client.close()
    assert mini.state.blobs[digest] == path.read_bytes()
    assert client.counters.blob_uploads == 1
    # The refused first chunk at most twice (the server may hang up on it, and a send on a
    # connection it closed is tried once more on a new one), then the whole blob once.
    assert 3 * 1024 * 1024 <= client.counters.bytes_up <= 5 * 1024 * 1024
    # POST, PATCH refused, POST, PUT. Where the server hung up on the PATCH instead of
    # answering it, the upload's status is asked (it holds nothing) and the PATCH sent once
    # more, which may meet the same: GET and PATCH, then GET again, at most.
    assert 4 <= client.counters.requests <= 7


def test_a_chunk_refused_as_too_large_goes_again_in_smaller_chunks(
    mini: MiniRegistry, tmp_path: Path
) -> None:
    """A chunk size the caller set, above a proxy's cap on bodies: the 413 sends the blob again
    in chunks of half that size (at most `chunk_after_413`), each under the cap."""
    path = tmp_path / "blob"
    size = 3 * 1024 * 1024
    digest = _big_file(path, size)
    mini.state.faults.update(patch="ok", max_body=1536 * 1024)
    client = Client(parse(f"oci://{mini.host}/t/runs:x"))
    client.chunk_size = 2 * 1024 * 1024
    client.upload(digest, path, size)
    client.close()
    assert mini.state.patches == [1024 * 1024] * 3
    assert mini.state.blobs[digest] == path.read_bytes()


# -- a first push sent while it is hashed ------------------------------------------------------


@pytest.fixture
def sent_while_hashed(monkeypatch: pytest.MonkeyPatch) -> None:
    """SEND_WHILE_HASHING (16 MiB) lowered, so that the shared archive takes the path of a
    large one: sent while it is hashed where it is a first push."""
    from catalytic_hooks.registry import push

    monkeypatch.setattr(push, "SEND_WHILE_HASHING", 1)


def test_a_first_push_is_sent_while_hashed_and_a_second_sends_nothing(
    shared: dict[str, Path],
    registry: Distribution,
    tmp_path: Path,
    sent_while_hashed: None,
) -> None:
    """From SEND_WHILE_HASHING up (16 MiB; lowered here so that the shared archive takes the
    same path), a push whose tags name nothing yet sends the archive in one PATCH while a second
    thread hashes it, and names the digest in the closing PUT. Pushed again, to its tag or to
    another, the run finds the run id's tag, is hashed first, and uploads nothing."""
    ref, uploads = f"oci://{registry.host}/team/streamed", "/v2/team/streamed/blobs/uploads/"
    first = _pushed(shared, ref, "--no-attestation", cwd=tmp_path)
    data = shared["archive_file"].read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert (first["archive"]["digest"], first["blobs_uploaded"]) == (digest, 2)
    assert registry.requests("PATCH", uploads) == 1
    assert registry.blob_data(digest).read_bytes() == data
    posts = registry.requests("POST", uploads)
    for again in (ref, f"{ref}:another"):
        d = _pushed(shared, again, "--no-attestation", cwd=tmp_path)
        assert (d["archive"]["digest"], d["blobs_uploaded"], d["digest"]) == (
            digest,
            0,
            first["digest"],
        )
    assert (registry.requests("POST", uploads), registry.requests("PATCH", uploads)) == (posts, 1)


def test_a_first_push_where_the_registry_has_no_chunks_goes_up_in_one_put(
    shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path, sent_while_hashed: None
) -> None:
    """The minimal registry answers PATCH 501: the push waits for the digest and sends the
    archive in one PUT after all."""
    d = _push_mini(shared, mini, tmp_path, "--no-attestation")
    assert d["blobs_uploaded"] == 2 and mini.state.tags["r1"] == d["digest"]
    assert mini.state.blobs[d["archive"]["digest"]] == shared["archive_file"].read_bytes()


def test_a_run_id_that_is_no_tag_is_never_asked_for(registry: Distribution) -> None:
    """A run id outside the tag grammar (a run directory may be named `../x`) is not looked up
    as a tag: it would be a path of its own in the request's URL."""
    from catalytic_hooks.registry.push import _may_hold

    client = Client(parse(f"oci://{registry.host}/team/notag:x"))
    before = registry.requests("HEAD", "/v2/team/notag/manifests/")
    assert _may_hold(client, {"../x", "a b", "fine"}) is False
    client.close()
    assert registry.requests("HEAD", "/v2/team/notag/manifests/") == before + 1
    assert registry.requests("HEAD", "/v2/team/notag/manifests/fine") == 1


def _open_here(path: Path) -> bool:
    """Whether a descriptor of this process is open on `path` (as /proc shows them)."""
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                return True
    return False


@pytest.mark.parametrize("change", ["flip", "truncate", "append"])
def test_an_archive_changed_while_it_is_pushed_is_refused_and_not_tagged(
    change: str,
    shared: dict[str, Path],
    mini: MiniRegistry,
    tmp_path: Path,
    sent_while_hashed: None,
) -> None:
    """The upload reads the file while the second thread hashes it. A byte changed after the
    hash read it is sent as changed, and the registry refuses the upload against the digest the
    closing PUT names; a file cut short after the hash read it is IO_ERROR as the upload reads
    it (before the fix: "cannot reach the registry", then the whole file again in one PUT). No
    manifest and no tag name either. A file that grew after the hash read it is published as
    the bytes the hash read, which its digest names. The registry holds its first upload
    session until the hashing thread has read the whole file (and closed it: by then no
    descriptor is open on the archive, the reader's check closed its own and the upload has not
    opened one); the test then changes the file."""
    mini.state.faults["patch"] = "ok"
    archive = tmp_path / "r1.catalytic.zip"
    shutil.copyfile(shared["archive_file"], archive)
    size, sessions = archive.stat().st_size, iter(range(100))

    def changed_once_hashed(path: str) -> tuple[int, dict[str, str], bytes]:
        n = next(sessions)
        if n == 0:
            deadline = time.monotonic() + 60
            while _open_here(archive):
                assert time.monotonic() < deadline, "the archive was never hashed"
                time.sleep(0.01)
            with open(archive, "r+b") as fh:
                if change == "truncate":
                    fh.truncate(size // 2)
                elif change == "append":
                    fh.seek(0, os.SEEK_END)
                    fh.write(b"appended after the hash")
                else:
                    fh.seek(size // 2)
                    byte = fh.read(1)[0]
                    fh.seek(size // 2)
                    fh.write(bytes([byte ^ 1]))
        return 202, {"Location": f"/v2/t/x/blobs/uploads/s{n}"}, b""

    mini.state.faults["answers"] = {"/v2/t/x/blobs/uploads/": changed_once_hashed}
    original = shared["archive_file"].read_bytes()
    p = inproc("archive", "push", str(archive), f"oci://{mini.host}/t/x", "--json", cwd=tmp_path)
    if change == "append":
        assert p.returncode == 0, p.stdout + p.stderr
        d = _json(p)["details"]
        assert d["archive"] == {
            "digest": "sha256:" + hashlib.sha256(original).hexdigest(),
            "size": size,
        }
        assert mini.state.blobs[d["archive"]["digest"]] == original
        assert mini.state.tags["r1"] == d["digest"]
        return
    assert p.returncode != 0, p.stdout
    error = _json(p)
    if change == "truncate":
        assert (error["code"], error["details"]["path"]) == ("IO_ERROR", str(archive)), error
        # cut off where the file ended (what the minimal registry kept of the broken PATCH),
        # and no second try in one PUT: no third session
        assert sum(mini.state.patches) <= size // 2 and next(sessions) == 2
    else:
        assert error["code"] == "REGISTRY_FAILED", error
        assert mini.state.patches == [size]  # the changed archive went up whole
    assert mini.state.tags == {} and mini.state.manifests == {}
    assert list(mini.state.blobs) == [f"sha256:{EMPTY_HEX}"]


@pytest.mark.parametrize("head", [404, 500])
def test_a_push_retried_after_a_late_failure_sends_no_archive_again(
    head: int,
    shared: dict[str, Path],
    mini: MiniRegistry,
    tmp_path: Path,
    sent_while_hashed: None,
) -> None:
    """The tag is written last, so a push refused at its tag leaves nothing that names the run;
    the first push noted in the cache that it started, and the retry hashes first and finds the
    archive in the registry. Before the fix the retry sent the whole archive again. A tag the
    registry will not answer for (500) counts as "may be held": that push hashes first too."""
    mini.state.faults["patch"] = "ok"
    answers = iter([(head, {}, b""), (500, {}, b"")])  # the tag: HEAD, then the PUT
    mini.state.faults["answers"] = {"/v2/t/x/manifests/r1": lambda path: next(answers)}
    ref, archive = f"oci://{mini.host}/t/x", str(shared["archive_file"])
    first = inproc("archive", "push", archive, ref, "--json", "--no-attestation", cwd=tmp_path)
    assert _json(first)["code"] == "REGISTRY_FAILED", first.stdout
    size = shared["archive_file"].stat().st_size
    assert mini.state.patches == ([size] if head == 404 else [])  # sent while hashed, or not
    assert mini.state.tags == {} and len(mini.state.blobs) == 2
    del mini.state.faults["answers"]
    again = _pushed(shared, ref, "--no-attestation", cwd=tmp_path)
    assert (again["blobs_uploaded"], again["blobs_skipped"]) == (0, 2)
    assert mini.state.patches == ([size] if head == 404 else [])
    assert mini.state.tags["r1"] == again["digest"]


def test_a_push_whose_cache_cannot_be_used_hashes_first_and_succeeds(
    shared: dict[str, Path],
    mini: MiniRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sent_while_hashed: None,
) -> None:
    """The note of a started push lives in the user's cache; where no cache can be made (its
    place is a file), the push does not fail for it: it hashes first, as before the note."""
    mini.state.faults["patch"] = "ok"
    (tmp_path / "not-a-dir").write_bytes(b"")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-dir"))
    d = _push_mini(shared, mini, tmp_path, "--no-attestation")
    assert d["blobs_uploaded"] == 2 and mini.state.patches == []  # one PUT, after the hash
    assert mini.state.blobs[d["archive"]["digest"]] == shared["archive_file"].read_bytes()
    assert (tmp_path / "not-a-dir").read_bytes() == b""


def test_a_first_push_to_a_registry_that_keeps_chunks_wrongly_goes_up_in_one_put(
    shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path, sent_while_hashed: None
) -> None:
    """A registry answering the whole-archive PATCH with a Range one byte short (as some do):
    the push did not ask for chunks, so it sends the archive in one PUT once the digest is
    known, instead of failing with CHUNK_RANGE."""
    mini.state.faults["patch"] = "short"
    d = _push_mini(shared, mini, tmp_path, "--no-attestation")
    assert mini.state.patches == [shared["archive_file"].stat().st_size]
    assert mini.state.blobs[d["archive"]["digest"]] == shared["archive_file"].read_bytes()
    assert mini.state.tags["r1"] == d["digest"]


@pytest.mark.parametrize(
    ("method", "holding", "lose", "times", "posts", "patches"),
    [
        (b"PATCH ", "", "answer", 1, 3, 2),
        (b"PATCH ", "", "request", 1, 2, 1),
        (b"PATCH ", "", "request", 2, 3, 0),
        (b"PUT ", "archive", "answer", 1, 2, 1),
        (b"PUT ", "archive", "request", 1, 2, 1),
        (b"PUT ", EMPTY_HEX, "answer", 1, 2, 1),
    ],
    ids=[
        "patch-acted-on",
        "patch-never-seen",
        "patch-never-seen-twice",
        "commit-acted-on",
        "commit-never-seen",
        "one-put",
    ],
)
def test_an_upload_whose_answer_was_lost_is_asked_about_not_sent_blindly_again(
    method: bytes,
    holding: str,
    lose: str,
    times: int,
    posts: int,
    patches: int,
    shared: dict[str, Path],
    registry: Distribution,
    tmp_path: Path,
    sent_while_hashed: None,
) -> None:
    """The real registry behind a relay that breaks kept-alive connections, at the archive's
    whole PATCH, its closing PUT or the empty config's one PUT: after the registry acted on the
    request (the answer lost, as a proxy loses one), or before it saw it (as a server that had
    closed the idle connection). A PUT is asked about by the blob's digest: the registry holds
    it (nothing is sent again) or does not (the PUT goes once more). A PATCH is asked about by
    the upload's status: one that never arrived goes once more (twice lost, the registry
    counts as one without chunks: the one PUT in a new upload); one that landed moved
    distribution's upload on, and distribution refuses the old URL (the new one was in the lost
    answer) and drops that upload, so the archive goes again in a new one (`posts`: the
    config's, the archive's and that one). No request the registry acted on in an upload is
    sent to that upload again. Before, each was sent again blindly: the committed PUT went to
    an upload that no longer existed (BLOB_UPLOAD_UNKNOWN, the push failed), the PATCH to the
    refused URL."""
    data = shared["archive_file"].read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    needle = (digest.split(":")[1] if holding == "archive" else holding).encode()
    relay = LossyRelay(registry.host, method, lose, holding=needle, times=times).start()
    name = f"team/lost-{method.decode().strip().lower()}-{lose}-{times}-{needle[:6].decode()}x"
    try:
        d = _pushed(shared, f"oci://{relay.host}/{name}", "--no-attestation", cwd=tmp_path)
    finally:
        relay.stop()
    assert relay.broken == times  # the connections were broken where the test says
    assert (d["archive"]["digest"], d["blobs_uploaded"]) == (digest, 2)
    assert registry.blob_data(digest).read_bytes() == data
    uploads = f"/v2/{name}/blobs/uploads/"
    assert registry.requests("POST", uploads) == posts
    assert registry.requests("PATCH", uploads) == patches
    assert registry.requests("PUT", uploads) == 2  # the config's and the archive's
    for method_ in ("PATCH", "PUT"):  # no upload was sent its one PATCH, or its PUT, twice
        sent = registry.uploads_sent(method_, name)
        assert len(sent) == len(set(sent)), (method_, sent)
    assert _manifest_via_registry(registry, name, "r1")["layers"][0]["digest"] == digest


def test_a_closing_put_lost_twice_fails_the_push_and_moves_no_tag(
    shared: dict[str, Path], registry: Distribution, tmp_path: Path, sent_while_hashed: None
) -> None:
    """The archive's closing PUT never reaches the registry, twice: the push asks for the blob
    after each, sends the PUT no third time, and fails as unreachable with no tag written."""
    data = shared["archive_file"].read_bytes()
    needle = hashlib.sha256(data).hexdigest().encode()
    relay = LossyRelay(registry.host, b"PUT ", "request", holding=needle, times=2).start()
    name = "team/lost-put-twice"
    try:
        p = inproc(
            "archive",
            "push",
            str(shared["archive_file"]),
            f"oci://{relay.host}/{name}",
            "--json",
            "--no-attestation",
            cwd=tmp_path,
        )
    finally:
        relay.stop()
    assert relay.broken == 2
    assert (p.returncode, _json(p)["code"]) == (2, "REGISTRY_UNREACHABLE")
    assert registry.requests("PUT", f"/v2/{name}/blobs/uploads/") == 1  # the config's alone
    assert registry.requests("HEAD", f"/v2/{name}/blobs/sha256:{needle.decode()}") >= 2
    with pytest.raises(urllib.error.HTTPError) as err:
        _manifest_via_registry(registry, name, "r1")
    assert err.value.code == 404


def test_a_chunk_landed_past_the_first_begins_the_upload_again_in_a_new_session(
    registry: Distribution, tmp_path: Path
) -> None:
    """Chunks of 1 MiB to the real registry, the answer to the second lost after the registry
    kept it: distribution will not say what it holds through the old URL and drops the upload,
    so the client begins again in a new upload, once, and the blob arrives whole. Before, the
    push failed (the PATCH sent again blindly was refused)."""
    path = tmp_path / "blob"
    size = 3 * 1024 * 1024 + 5
    digest = _big_file(path, size)
    relay = LossyRelay(registry.host, b"PATCH ", "answer", skip=1).start()
    try:
        client = Client(parse(f"oci://{relay.host}/team/restarted"))
        client.chunk_size = 1024 * 1024
        client.upload(digest, path, size)
        client.close()
    finally:
        relay.stop()
    assert relay.broken == 1
    assert registry.blob_data(digest).read_bytes() == path.read_bytes()
    uploads = "/v2/team/restarted/blobs/uploads/"
    assert registry.requests("POST", uploads) == 2
    assert registry.requests("PATCH", uploads) == 2 + 4  # two before the loss, four after
    assert registry.requests("PUT", uploads) == 1


def test_a_chunk_kept_by_a_registry_that_appends_is_not_sent_twice(
    shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path, sent_while_hashed: None
) -> None:
    """The minimal registry appends what each PATCH brings, as the spec's streamed upload
    does. Its answer to the whole-archive PATCH lost, the push asks the upload's status and
    goes on to the closing PUT. Before, the PATCH went again: the registry kept the archive
    twice, said so in its Range, and the push sent the archive a third time in one PUT."""
    mini.state.faults["patch"] = "ok"
    relay = LossyRelay(mini.host, b"PATCH ", "answer").start()
    try:
        d = _pushed(shared, f"oci://{relay.host}/t/x", "--no-attestation", cwd=tmp_path)
    finally:
        relay.stop()
    assert relay.broken == 1
    data = shared["archive_file"].read_bytes()
    assert mini.state.patches == [len(data)]
    assert mini.state.posts == 2  # the config's upload and the archive's: none begun again
    assert mini.state.blobs[d["archive"]["digest"]] == data
    assert mini.state.tags["r1"] == d["digest"]


def test_a_credential_helpers_token_user_is_an_identity_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker's credential-helper protocol marks an identity token with the user `<token>`:
    it is sent only as the refresh-token grant (the token tests above), never as Basic."""
    from catalytic_hooks.registry import auth

    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text(
        "#!/bin/sh\nread server\n"
        'if [ "$server" = "tok.example:5000" ]; then\n'
        '  echo \'{"Username": "<token>", "Secret": "refresh-from-helper"}\'\n'
        'else\n  echo \'{"Username": "ci", "Secret": "pw-from-helper"}\'\nfi\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"credHelpers": {"tok.example:5000": "fake", "pw.example": "fake"}}))
    token = auth.find_credential("tok.example:5000", cfg)
    password = auth.find_credential("pw.example", cfg)
    assert token is not None and token.identity and token.secret == "refresh-from-helper"
    assert password is not None and not password.identity and password.username == "ci"
    assert "refresh-from-helper" not in repr(token) and "pw-from-helper" not in repr(password)
    challenge = auth.parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"'
    )
    method, url, headers, body = auth.token_request(challenge, token)
    assert (method, url, body) == (
        "POST",
        "https://auth.example/token",
        b"grant_type=refresh_token&client_id=catalytic&service=reg"
        b"&scope=repository%3Aa%2Fb%3Apull&refresh_token=refresh-from-helper",
    )
    assert "Authorization" not in headers
    method, url, headers, body = auth.token_request(challenge, password)
    assert (method, body) == ("GET", None)
    assert url == "https://auth.example/token?service=reg&scope=repository%3Aa%2Fb%3Apull"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"ci:pw-from-helper").decode()


def _helper_config(tmp_path: Path, script: str) -> Path:
    """A Docker config whose `credsStore` is the helper `planted`, written as `script` to
    tmp_path/docker-credential-planted (executable)."""
    helper = tmp_path / "docker-credential-planted"
    helper.write_text("#!/bin/sh\n" + script)
    helper.chmod(0o755)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"credsStore": "planted"}))
    return cfg


@pytest.mark.parametrize("entry", ["", ".", "rel"])
def test_a_credential_helper_is_never_run_from_a_relative_path_entry(
    entry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PATH with an empty, `.` or relative entry would find a `docker-credential-*` that the
    repository being worked on planted in (or under) the current directory; docker (Go's
    exec.LookPath) refuses such a result, and so does the client since the fix
    (before, `find_credential` ran the planted script). Only absolute entries are searched."""
    from catalytic_hooks.core.errors import CatalyticError
    from catalytic_hooks.registry import auth

    marker = tmp_path / "ran"
    where = tmp_path / entry if entry not in ("", ".") else tmp_path
    where.mkdir(exist_ok=True)
    cfg = _helper_config(where, f'touch {marker}\necho \'{{"Username": "u", "Secret": "s"}}\'\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", "/bin", entry]))
    with pytest.raises(CatalyticError) as caught:
        auth.find_credential("registry.example", cfg)
    assert (caught.value.code.value, caught.value.details["reason"]) == ("REGISTRY_AUTH", "HELPER")
    assert "not in any absolute directory on PATH" in caught.value.message
    assert not marker.exists()
    # The same helper in an absolute PATH entry is run.
    monkeypatch.setenv("PATH", os.pathsep.join([str(where), "/usr/bin", "/bin"]))
    found = auth.find_credential("registry.example", cfg)
    assert found is not None and (found.username, found.secret) == ("u", "s")
    assert marker.exists()


def test_a_credential_helpers_answer_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper that answers without end is cut off past HELPER_OUTPUT (1 MiB) and refused:
    before the fix its whole output was read into memory (150 MB: 306 MiB)."""
    from catalytic_hooks.core.errors import CatalyticError
    from catalytic_hooks.registry import auth

    cfg = _helper_config(tmp_path, "exec yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n")
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path), "/usr/bin", "/bin"]))
    with pytest.raises(CatalyticError) as caught:
        auth.find_credential("registry.example", cfg)
    assert caught.value.details["reason"] == "HELPER"
    assert f"answered more than {auth.HELPER_OUTPUT} bytes" in caught.value.message


def test_a_credential_helper_that_leaves_a_child_behind_still_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper that answers and exits while a child it started holds its output open (a
    keychain agent, say): its answer counts once it has exited, instead of an error when the
    30 s timeout ends the wait for the end of its output."""
    from catalytic_hooks.registry import auth

    child = tmp_path / "child.pid"
    cfg = _helper_config(
        tmp_path,
        f'sleep 600 &\necho $! > {child}\necho \'{{"Username": "u", "Secret": "from-helper"}}\'\n',
    )
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path), "/usr/bin", "/bin"]))
    try:
        found = auth.find_credential("registry.example", cfg)
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(child.read_text()), signal.SIGKILL)
    assert found is not None and found.secret == "from-helper"


def test_a_chunk_the_registry_did_not_keep_stops_the_upload(
    mini: MiniRegistry, tmp_path: Path
) -> None:
    from catalytic_hooks.core.errors import CatalyticError
    from catalytic_hooks.registry.client import Client

    path = tmp_path / "blob"
    digest = _big_file(path, 2 * 1024 * 1024)
    mini.state.faults["patch"] = "short"
    client = Client(parse(f"oci://{mini.host}/t/runs:x"))
    client.chunk_size = 1024 * 1024
    with pytest.raises(CatalyticError) as err:
        client.upload(digest, path, 2 * 1024 * 1024)
    client.close()
    assert (err.value.code.value, err.value.details["reason"]) == ("REGISTRY_FAILED", "CHUNK_RANGE")
    assert digest not in mini.state.blobs and client.counters.requests == 2  # POST, one PATCH


def test_a_put_refused_as_too_large_goes_again_in_chunks(
    mini: MiniRegistry, tmp_path: Path
) -> None:
    """No chunk size set: one PUT; a 413 (a proxy's cap on request bodies) sends it again in
    PATCH chunks, each under the cap."""
    from catalytic_hooks.registry.client import Client

    size = 3 * 1024 * 1024 + 7
    path = tmp_path / "blob"
    digest = _big_file(path, size)
    mini.state.faults.update(patch="ok", max_body=1024 * 1024 + 1)
    client = Client(parse(f"oci://{mini.host}/t/runs:x"))
    client.chunk_after_413 = 1024 * 1024
    client.upload(digest, path, size)
    client.close()
    assert mini.state.blobs[digest] == path.read_bytes()
    assert mini.state.patches == [1024 * 1024] * 3 + [7]
    mini.state.faults["max_body"] = 1024  # the chunks are refused too: the 413 is reported
    again = tmp_path / "again"
    other = _big_file(again, 2 * 1024 * 1024)
    client = Client(parse(f"oci://{mini.host}/t/runs:x"))
    client.chunk_after_413 = 1024 * 1024
    from catalytic_hooks.core.errors import CatalyticError

    with pytest.raises(CatalyticError) as err:
        client.upload(other, again, 2 * 1024 * 1024)
    client.close()
    assert (err.value.code.value, err.value.details["status"]) == ("REGISTRY_FAILED", 413)
    assert other not in mini.state.blobs


def test_archive_push_through_a_proxy_that_caps_bodies(
    shared: dict[str, Path], mini: MiniRegistry, tmp_path: Path
) -> None:
    size = shared["archive_file"].stat().st_size
    mini.state.faults.update(patch="ok", max_body=size // 2 + 1)
    info = _push_mini(shared, mini, tmp_path, "--no-attestation")
    assert mini.state.patches == [size // 2, size - size // 2]  # refused whole, sent in halves
    assert mini.state.blobs[info["archive"]["digest"]] == shared["archive_file"].read_bytes()


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Distribution, Path]]:
    """The real registry speaking HTTPS only, with a certificate for `registry.test` signed by
    an authority made for this module (its ca.pem is returned beside it)."""
    d = tmp_path_factory.mktemp("tls-registry")
    ca, cert, key = tls_files(d, ["registry.test"])
    reg = Distribution(d, tls=(cert, key)).start()
    yield reg, ca
    reg.stop()


def _resolving(monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...]) -> None:
    """`names` resolve to 127.0.0.1 in this process, as `curl --resolve` does. Why not a real
    name: a test cannot add a resolver entry without root, and a loopback name is (rightly)
    spoken to in plain HTTP, so the HTTPS path is reached only through a name that is not one."""
    real = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        return real("127.0.0.1" if host in names else host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_https_registry_is_checked_against_the_authorities_the_caller_trusts(
    shared: dict[str, Path],
    tls_registry: tuple[Distribution, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A registry that is not on loopback is spoken to over HTTPS, its certificate checked
    against the system's authorities (OpenSSL's SSL_CERT_FILE names another bundle) and its
    name against the certificate: an unknown authority or another name is refused in the
    handshake, before any request, and nothing is cached or written."""
    reg, ca = tls_registry
    _resolving(monkeypatch, ("registry.test", "elsewhere.test"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    ref = f"oci://registry.test:{reg.port}/team/tls"

    untrusted = inproc("archive", "push", str(shared["archive_file"]), ref, "--json", cwd=tmp_path)
    assert untrusted.returncode == 2, untrusted.stdout + untrusted.stderr
    assert _json(untrusted)["code"] == "REGISTRY_UNREACHABLE"
    assert _json(untrusted)["details"]["reason"] == "TLS"
    assert _json(untrusted)["details"]["registry"] == f"https://registry.test:{reg.port}"
    assert "unable to get local issuer certificate" in _json(untrusted)["message"]
    assert reg.requests("POST", "/v2/team/tls/blobs/uploads") == 0  # nothing reached HTTP

    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    pushed = _pushed(shared, ref, cwd=tmp_path)
    assert reg.requests("PUT", "/v2/team/tls/manifests/") >= 1
    pinned = f"{ref}@{pushed['digest']}"
    pulled = inproc("archive", "pull", pinned, "-o", "p.zip", "--json", cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert (tmp_path / "p.zip").read_bytes() == shared["archive_file"].read_bytes()

    other = pinned.replace("registry.test", "elsewhere.test")
    for text, cert_file, why in (
        (other, str(ca), "Hostname mismatch"),
        (pinned, None, "unable to get local issuer certificate"),
    ):
        shutil.rmtree(Path(os.environ["HOME"]) / ".cache", ignore_errors=True)
        if cert_file is None:
            monkeypatch.delenv("SSL_CERT_FILE")
        refused = inproc("archive", "pull", text, "-o", "q.zip", "--json", cwd=tmp_path)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert (_json(refused)["code"], _json(refused)["details"]["reason"]) == (
            "REGISTRY_UNREACHABLE",
            "TLS",
        )
        assert why in _json(refused)["message"]
        assert not (tmp_path / "q.zip").exists() and _cache_blobs() == []
