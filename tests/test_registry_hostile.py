"""A hostile registry (the security review of registry/): every answer crafted against the
client is refused with a stable REGISTRY_* code and its `details.reason`, never INTERNAL, and
leaves nothing cached or written. The registry is the minimal one of registries.py on loopback,
answering what each case plants (`faults["answers"]`); the commands are the real CLI."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import ipaddress
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import git, inproc, on_another_file_system
from .registries import MiniRegistry
from .test_archive import made  # noqa: F401 (a fixture `shared` needs)
from .test_registry import (  # noqa: F401 (the fixtures mini and shared)
    _cache_blobs,
    _json,
    _nothing_kept,
    _push_mini,
    _verify_attested,
    mini,
    shared,
)

MANIFEST_PATH = "/v2/t/runs/manifests/r1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _challenge(realm: str) -> tuple[int, dict[str, str], bytes]:
    return 401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="mini"'}, b""


def _redirect(location: str) -> tuple[int, dict[str, str], bytes]:
    return 307, {"Location": location}, b""


DEEP = b"[" * 60000  # past the interpreter's recursion limit: json.loads raises RecursionError

# case: ({path: (status, headers, body)}, exit status, code, reason); "{host}" is the registry's.
# Each of these ended in INTERNAL (exit 3) before the review's fixes, but the three
# REGISTRY_AUTH cases, which had no reason before theirs.
PULLS: dict[str, tuple[dict[str, tuple[int, dict[str, str], bytes]], int, str, str | None]] = {
    "redirect-port-out-of-range": (
        {MANIFEST_PATH: _redirect("http://127.0.0.1:99999/x")},
        2,
        "REGISTRY_FAILED",
        "BAD_URL",
    ),
    "redirect-unclosed-ipv6": (
        {MANIFEST_PATH: _redirect("http://[::1/x")},
        2,
        "REGISTRY_FAILED",
        "BAD_URL",
    ),
    "redirect-non-ascii-path": (
        {MANIFEST_PATH: _redirect("/v2/t/runs/manifests/\u00e9")},
        2,
        "REGISTRY_FAILED",
        "BAD_URL",
    ),
    "redirect-label-too-long": (
        {MANIFEST_PATH: _redirect("http://" + "a" * 64 + ".example/x")},
        2,
        "REGISTRY_FAILED",
        "BAD_URL",
    ),
    "realm-port-not-a-number": (
        {MANIFEST_PATH: _challenge("https://auth.example:abc/token")},
        2,
        "REGISTRY_FAILED",
        "BAD_URL",
    ),
    "token-not-latin-1": (
        {
            MANIFEST_PATH: _challenge("http://{host}/token"),
            "/token": (200, {}, json.dumps({"token": "abc\u20ac"}).encode()),
        },
        2,
        "REGISTRY_AUTH",
        "TOKEN",
    ),
    "token-with-a-header-break": (
        {
            MANIFEST_PATH: _challenge("http://{host}/token"),
            "/token": (200, {}, json.dumps({"token": "abc\r\nX-Injected: 1"}).encode()),
        },
        2,
        "REGISTRY_AUTH",
        "TOKEN",
    ),
    "token-answer-nested-deeply": (
        {MANIFEST_PATH: _challenge("http://{host}/token"), "/token": (200, {}, DEEP)},
        2,
        "REGISTRY_AUTH",
        "TOKEN",
    ),
    # The header is not a number: the body is read to the connection's end, capped as ever,
    # and judged (here: not a manifest).
    "content-length-superscript": (
        {MANIFEST_PATH: (200, {"Content-Length": "\u00b2", "Content-Type": OCI_MANIFEST}, b"{}")},
        1,
        "REGISTRY_INVALID",
        "MEDIA_TYPE",
    ),
    "content-length-5000-digits": (
        {MANIFEST_PATH: (200, {"Content-Length": "9" * 5000, "Content-Type": OCI_MANIFEST}, b"{}")},
        1,
        "REGISTRY_INVALID",
        "MEDIA_TYPE",
    ),
    # REGISTRY_AUTH with a reason of its own for each (before the fix, none)
    "401-without-a-challenge": (
        {MANIFEST_PATH: (401, {}, b"")},
        2,
        "REGISTRY_AUTH",
        "NO_CHALLENGE",
    ),
    "403": ({MANIFEST_PATH: (403, {}, b"")}, 2, "REGISTRY_AUTH", "DENIED"),
    "an-unknown-scheme": (
        {MANIFEST_PATH: (401, {"WWW-Authenticate": "Negotiate"}, b"")},
        2,
        "REGISTRY_AUTH",
        "SCHEME",
    ),
    "error-body-errors-not-a-list": (
        {MANIFEST_PATH: (500, {"Content-Type": "application/json"}, b'{"errors": 5}')},
        2,
        "REGISTRY_FAILED",
        None,
    ),
    "error-body-nested-deeply": (
        {MANIFEST_PATH: (500, {"Content-Type": "application/json"}, DEEP)},
        2,
        "REGISTRY_FAILED",
        None,
    ),
}


@pytest.mark.parametrize("case", list(PULLS))
def test_hostile_answers_are_refused_with_a_code(
    case: str,
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    answers, rc, code, reason = PULLS[case]
    mini.state.faults["answers"] = {
        path: (status, {k: v.replace("{host}", mini.host) for k, v in headers.items()}, body)
        for path, (status, headers, body) in answers.items()
    }
    got = inproc(
        "archive", "pull", f"oci://{mini.host}/t/runs:r1", "-o", "out.zip", "--json", cwd=tmp_path
    )
    doc = _json(got)
    assert (got.returncode, doc["code"], doc["details"].get("reason")) == (rc, code, reason), doc
    if code == "REGISTRY_FAILED" and reason is None:
        assert doc["details"] == {"registry_codes": [], "status": 500}
    assert _cache_blobs() == []
    _nothing_kept(tmp_path)


def test_a_tag_list_nested_deeply_is_refused(
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    from .helpers import git

    git(tmp_path, "init", "-q")
    mini.state.faults["answers"] = {"/v2/t/runs/tags/list": (200, {}, b'{"tags":' + DEEP)}
    got = inproc("validate", f"oci://{mini.host}/t/runs", "--json", cwd=tmp_path)
    doc = _json(got)
    assert (got.returncode, doc["code"], doc["details"]["reason"]) == (
        1,
        "REGISTRY_INVALID",
        "TAG_LIST",
    ), doc
    assert _cache_blobs() == [] and not (tmp_path / ".catalytic").exists()


@pytest.mark.parametrize("host", ["a..b", "a" * 64 + ".example", "[1]"])
def test_a_reference_whose_host_no_resolver_takes_is_a_usage_error(
    host: str, tmp_path: Path
) -> None:
    got = inproc("archive", "pull", f"oci://{host}/t/runs:r1", "--json", cwd=tmp_path)
    assert (got.returncode, _json(got)["code"]) == (2, "USAGE"), got.stdout


@pytest.mark.parametrize(
    "reference",
    [
        "oci://alice:s3cr3tPW@registry.example/t/runs:r1",
        "oci://alice:s3cr3t/PW@registry.example/t/runs",  # a / in the password
        "oci://alice:s3cr3tPW@registry.example/t/runs@sha256:" + "a" * 64,
        # with a port, which before the fix passed for a digest (`@HOST:PORT`)
        "oci://alice:s3cr3tPW@registry.example:5000/t/runs:r1",
        "oci://alice:s3cr3t/PW@registry.example:5000",  # a / in the password, no path
        # a scheme is case-insensitive: before the fix `OCI://` was taken for a file path and
        # echoed whole by `verify` and `validate`
        "OCI://alice:s3cr3tPW@registry.example/t/runs:r1",
        "Oci:/alice:s3cr3tPW@registry.example/t/runs:r1",
    ],
)
@pytest.mark.parametrize("mode", ["--json", "--human", "validate"])
def test_a_password_typed_into_a_reference_is_never_echoed(
    reference: str, mode: str, tmp_path: Path
) -> None:
    """User info in a reference is refused (credentials belong in the Docker config), and the
    refusal quotes the reference with it replaced: before the fix the whole text, password
    included, went into the message and `details.reference`, so into CI logs."""
    args = {
        "--human": ["verify", reference],
        "--json": ["verify", reference, "--json"],
        "validate": ["validate", reference, "--json"],
    }[mode]
    cwd = tmp_path
    if mode == "validate":  # validate works in a repository
        cwd = tmp_path / "repo"
        git(tmp_path, "init", "-q", str(cwd))
    got = inproc(*args, cwd=cwd)
    assert got.returncode == 2, got.stdout + got.stderr
    text = got.stdout + got.stderr
    assert "s3cr3t" not in text and "alice" not in text
    assert "oci://***@registry.example" in text
    assert "user info (credentials)" in text
    if mode != "--human":
        doc = _json(got)
        assert doc["code"] == "USAGE" and doc["details"]["reference"].startswith("oci://***@")
    assert [p.name for p in cwd.iterdir()] == ([".git"] if mode == "validate" else [])


# -- a presigned storage URL is a bearer capability: never shown -------------------------------

SECRET = "SECRETSIGNATURE0123"


@pytest.fixture
def storage() -> Iterator[MiniRegistry]:
    """A second server, playing the cloud storage a registry redirects blob reads to."""
    reg = MiniRegistry().start()
    yield reg
    reg.stop()


def _archive_manifest(reg: MiniRegistry, data: bytes, run_id: str = "r1") -> str:
    """An archive manifest tagged r1 on `reg` whose one layer is `data` (which `reg` need not
    hold); its layer's digest."""
    from catalytic_hooks.registry import artifact

    blob = artifact.descriptor_of(data, artifact.ARCHIVE_TYPE)
    body = artifact.archive_manifest(
        blob, run_id=run_id, commit=None, signer="0" * 64, bundle_root="0" * 64, created=None
    )
    digest = artifact.descriptor_of(body, OCI_MANIFEST).digest
    reg.state.manifests[digest] = (body, OCI_MANIFEST)
    reg.state.tags["r1"] = digest
    return blob.digest


def _presigned(storage: MiniRegistry, path: str) -> str:
    return (
        f"http://{storage.host}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential=AKIAEXAMPLE%2F20260101&X-Amz-Signature={SECRET}"
    )


@pytest.mark.parametrize(
    ("fault", "rc", "code", "reason"),
    [
        ("reset", 2, "REGISTRY_UNREACHABLE", "INTERRUPTED"),
        ("truncate", 1, "REGISTRY_DIGEST_MISMATCH", "TRUNCATED"),  # the cache counts it: no URL
        ("huge-manifest", 1, "REGISTRY_INVALID", "TOO_LARGE"),
    ],
)
def test_a_presigned_url_a_redirect_gave_is_never_shown(
    fault: str,
    rc: int,
    code: str,
    reason: str,
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    storage: MiniRegistry,
    tmp_path: Path,
) -> None:
    """The registry redirects a read to storage with a signed query (as distribution on S3
    does); the transfer then breaks, or the manifest there is oversized. The error names the
    registry URL asked for and the storage's origin, never the query."""
    data = bytes(range(256)) * 4096  # 1 MiB: the reset comes mid-body
    digest = _archive_manifest(mini, data)
    if fault == "huge-manifest":
        asked = "/v2/t/runs/manifests/r1"
        storage.state.faults["manifest"] = {"big": (b" " * (5 * 1024 * 1024), OCI_MANIFEST)}
        target = "/v2/t/runs/manifests/big"
    else:
        asked = f"/v2/t/runs/blobs/{digest}"
        storage.state.blobs[digest] = data
        storage.state.faults[fault] = {digest}
        target = asked
    mini.state.faults["answers"] = {asked: _redirect(_presigned(storage, target))}
    ref = f"oci://{mini.host}/t/runs:r1"
    shown = []
    for mode in (["--json"], []):
        got = inproc("archive", "pull", ref, "-o", "out.zip", *mode, cwd=tmp_path)
        assert got.returncode == rc, got.stdout + got.stderr
        shown.append(got.stdout + got.stderr)
    doc = json.loads(shown[0])
    assert (doc["code"], doc["details"]["reason"]) == (code, reason)
    if fault != "truncate":
        assert doc["details"]["url"] == f"http://{mini.host}{asked}"
        assert doc["details"]["served_by"] == f"http://{storage.host}"
    for text in shown:
        assert SECRET not in text and "AKIAEXAMPLE" not in text and "X-Amz" not in text
    assert _cache_blobs() == []
    _nothing_kept(tmp_path)


# -- a tag list that never ends ------------------------------------------------------------------

TAGS_PATH = "/v2/t/runs/tags/list"


def _endless(tags: int, pad: int = 0) -> Callable[[str], tuple[int, dict[str, str], bytes]]:
    """Tag list pages each naming a next page never seen before (`last=` counts up)."""
    count = [0]

    def page(path: str) -> tuple[int, dict[str, str], bytes]:
        count[0] += 1
        names = [f"p{count[0]}-{i}" for i in range(tags)]
        body = json.dumps({"name": "t/runs", "tags": names}).encode()
        link = f'<{TAGS_PATH}?n=1000&last=p{count[0]}>; rel="next"'
        return 200, {"Link": link}, body[:-1] + b" " * pad + b"}"

    return page


TAG_LISTS: dict[str, tuple[object, int, str, str, int]] = {
    # case: (the answer, exit status, code, reason, pages read)
    "next-is-the-same-page": (
        (200, {"Link": f'<{TAGS_PATH}?n=1000&last=a>; rel="next"'}, b'{"tags": ["a"]}'),
        2,
        "REGISTRY_FAILED",
        "LOOP",
        2,
    ),
    "a-new-page-for-ever": (_endless(1), 1, "REGISTRY_INVALID", "TOO_MANY_TAGS", 1000),
    "one-page-over-the-tag-limit": (
        (200, {}, json.dumps({"tags": [f"t{i}" for i in range(100_001)]}).encode()),
        1,
        "REGISTRY_INVALID",
        "TOO_MANY_TAGS",
        1,
    ),
    "pages-of-blanks-over-the-byte-limit": (
        _endless(0, pad=4 * 1024 * 1024 - 64),
        1,
        "REGISTRY_INVALID",
        "TOO_MANY_TAGS",
        9,
    ),
}


@pytest.mark.parametrize("case", list(TAG_LISTS))
def test_a_tag_list_that_never_ends_is_refused(
    case: str,
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    from .helpers import git

    answer, rc, code, reason, pages = TAG_LISTS[case]
    git(tmp_path, "init", "-q")
    mini.state.faults["answers"] = {TAGS_PATH: answer}
    got = inproc("validate", f"oci://{mini.host}/t/runs", "--json", cwd=tmp_path)
    doc = _json(got)
    assert (got.returncode, doc["code"], doc["details"]["reason"]) == (rc, code, reason), doc
    assert doc["details"]["pages"] == pages
    assert _cache_blobs() == [] and not (tmp_path / ".catalytic").exists()


# -- a tag that is not a tag -------------------------------------------------------------------

EVIL_TAG = "\x1b[2J\x1b[1;31mALL RUNS PASS\x1b[0m"


def test_listed_strings_that_are_not_tags_never_become_run_ids(
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """A registry lists terminal escapes and a path among its tags: they are dropped and
    counted, and appear in no output, report or chronicle record; the one real tag (here not
    pullable) is still a candidate."""
    from .helpers import git

    git(tmp_path, "init", "-q")
    body = json.dumps({"name": "t/runs", "tags": [EVIL_TAG, "a/../../b", "r-gone"]}).encode()
    mini.state.faults["answers"] = {TAGS_PATH: (200, {}, body)}
    ref = f"oci://{mini.host}/t/runs"
    shown = []
    for mode in (["--json"], []):
        got = inproc("validate", ref, *mode, cwd=tmp_path)
        assert got.returncode == 1, got.stdout + got.stderr  # r-gone cannot be pulled
        shown.append(got.stdout + got.stderr)
    doc = json.loads(shown[0])
    assert (doc["code"], doc["details"]["candidates"], doc["details"]["tags_ignored"]) == (
        "VALIDATION_FAILED",
        1,
        2,
    )
    (row,) = doc["details"]["results"]
    assert (row["run_id"], row["reason"].split(":")[0]) == ("r-gone", "REGISTRY_NOT_FOUND")
    assert "validate: 1 of 1 run(s)" in shown[1] and "2 registry tag(s) ignored" in shown[1]
    written = [p.read_text() for p in (tmp_path / ".catalytic").rglob("*") if p.is_file()]
    assert any('"kind":"validate"' in text for text in written)  # the chronicle
    for text in shown + written:
        for bad in ("\x1b", "\\u001b", "ALL RUNS PASS", "a/../../b"):
            assert bad not in text
    assert _cache_blobs() == []


# -- junk referrers cannot veto ------------------------------------------------------------------


def _junk(reg: MiniRegistry, info: dict, kind: str, i: int, size: int = 0, pad: int = 0) -> str:
    """A referrer anyone with push access can attach to the archive (the referrers API lists
    it), made from the real attestation's manifest: `envelope` (a DSSE layer of junk bytes),
    `layer` (not a DSSE layer), `subject` (about another manifest) or `missing` (listed, not
    stored); `size`: the junk envelope's length; `pad`: characters of annotation that make
    the manifest itself that much longer. Its digest."""
    from catalytic_hooks.registry import artifact

    real, media = reg.state.manifests[info["attestation"]["digest"]]
    m = json.loads(real)
    if kind == "envelope":
        blob = (b"junk %d" % i).ljust(size, b"j")
        m["layers"][0].update(digest=artifact.descriptor_of(blob, "x").digest, size=len(blob))
        reg.state.blobs[m["layers"][0]["digest"]] = blob
    elif kind == "layer":
        m["layers"][0]["mediaType"] = "application/octet-stream"
    elif kind == "subject":
        m["subject"]["digest"] = "sha256:" + "1" * 64
    m["annotations"] = {"n": str(i), **({"pad": "p" * pad} if pad else {})}
    body = json.dumps(m).encode()
    digest = artifact.descriptor_of(body, media).digest
    if kind != "missing":
        reg.state.manifests[digest] = (body, media)
    entry = {"mediaType": media, "digest": digest, "size": len(body)}
    reg.state.referrers[info["digest"]].append({**entry, "artifactType": m["artifactType"]})
    return digest


KINDS = ("envelope", "layer", "subject", "missing")


def _listed(reg: MiniRegistry, info: dict, before: int, after: int) -> list[str]:
    """`before` junk referrers listed before the real attestation and `after` after it."""
    listing = reg.state.referrers[info["digest"]]
    real = listing.pop()
    junk = [_junk(reg, info, KINDS[i % 4], i) for i in range(before)]
    listing.append(real)
    junk += [_junk(reg, info, KINDS[i % 4], before + i) for i in range(after)]
    return junk


def _verify_attested_human(info: dict, kit: dict[str, Path], cwd: Path):  # type: ignore[no-untyped-def]
    """`verify REF --attested` as a person reads it (no --json)."""
    return inproc(
        "verify", info["reference"], "--attested", "--trust-file", str(kit["trust"]), cwd=cwd
    )


def test_junk_referrers_listed_first_cannot_veto_a_valid_attestation(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """100 junk referrers (more than the 64 once checked in all) listed before the real one,
    3 after: each refused one is reported and skipped, the real one passes, and the search
    stops there."""
    info = _push_mini(shared, mini, tmp_path)
    junk = _listed(mini, info, 100, 3)
    rc, doc = _verify_attested(info["reference"], shared, tmp_path)
    assert (rc, doc["code"]) == (0, "PASS"), doc
    row = doc["details"]["results"][0]
    rows = row["attestations"]
    assert [r["digest"] for r in rows] == [*junk[:100], info["attestation"]["digest"]]
    assert [r["valid"] for r in rows] == [False] * 100 + [True]
    assert [r["code"] for r in rows[:4]] == [  # the kinds of junk, in turn
        "JSON_INVALID",  # an envelope of junk bytes
        "REGISTRY_INVALID",  # not a DSSE layer
        "REGISTRY_INVALID",  # about another manifest
        "REGISTRY_NOT_FOUND",  # listed, not stored
    ]
    assert row["attestations_unchecked"] == 3 and "reason" not in doc["details"]
    human = _verify_attested_human(info, shared, tmp_path)
    assert human.returncode == 0, human.stdout + human.stderr
    assert f"attestation {info['attestation']['digest']} (referrers-api): valid" in human.stdout
    assert "3 more attached, not fetched: one verifies" in human.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    _nothing_kept(tmp_path)


def test_the_limit_on_referrers_fetched_ends_the_search_with_its_own_reason(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    from catalytic_hooks.registry.pull import MAX_REFERRERS

    info = _push_mini(shared, mini, tmp_path)
    _listed(mini, info, MAX_REFERRERS, 0)
    rc, doc = _verify_attested(info["reference"], shared, tmp_path)
    assert (rc, doc["code"], doc["details"]["reason"]) == (
        1,
        "ATTESTATION_MISSING",
        "REFERRER_LIMIT",
    )
    row = doc["details"]["results"][0]
    assert row["valid"] and row["attestations_reason"] == "REFERRER_LIMIT"
    assert len(row["attestations"]) == MAX_REFERRERS and row["attestations_unchecked"] == 1
    assert not any(a["valid"] for a in row["attestations"])
    human = _verify_attested_human(info, shared, tmp_path)
    assert human.returncode == 1
    assert (
        f"REJECTED ATTESTATION_MISSING: none of the {MAX_REFERRERS} attestations fetched "
        "verifies, and 1 more attached were not fetched (REFERRER_LIMIT" in human.stdout
    )
    _nothing_kept(tmp_path)


def test_a_junk_referrer_does_not_stop_archive_pull(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    info = _push_mini(shared, mini, tmp_path)
    listing = mini.state.referrers[info["digest"]]
    real = listing.pop()
    junk = _junk(mini, info, "layer", 0)  # listed first: a layer that is not a DSSE envelope
    listing.append(real)
    ref = f"oci://{mini.host}/t/runs:r1"
    got = inproc("archive", "pull", ref, "-o", "out.zip", "--json", cwd=tmp_path)
    assert got.returncode == 0, got.stdout + got.stderr
    doc = _json(got)["details"]
    assert doc["referrers_skipped"] == [
        {"digest": junk, "code": "REGISTRY_INVALID", "reason": "LAYERS"}
    ]
    assert [a["digest"] for a in doc["attestations"]] == [
        "sha256:" + hashlib.sha256(shared["attestation"].read_bytes()).hexdigest()
    ]
    assert (tmp_path / "out.zip").read_bytes() == shared["archive_file"].read_bytes()
    assert (tmp_path / "out.intoto.json").read_bytes() == shared["attestation"].read_bytes()
    human = inproc("archive", "pull", ref, "-o", "again.zip", cwd=tmp_path)
    assert human.returncode == 0, human.stdout + human.stderr
    assert "1 attached referrer(s) refused and skipped (REGISTRY_INVALID;" in human.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "again.intoto.json",
        "again.zip",
        "out.intoto.json",
        "out.zip",
    ]


@pytest.mark.parametrize("names", ["archive", "envelope"])
def test_a_junk_referrer_naming_a_checked_blob_with_another_size_removes_nothing(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    names: str,
) -> None:
    """A referrer whose DSSE layer names the archive's blob (or the real envelope's, listed
    after the real attestation) with a size of 1: the cache took the lie for a corrupted entry
    and removed the checked bytes from under the pull, which then failed writing out.zip
    (IO_ERROR). Now the junk is refused by its size and skipped, and the pull completes."""
    info = _push_mini(shared, mini, tmp_path)
    envelope = "sha256:" + hashlib.sha256(shared["attestation"].read_bytes()).hexdigest()
    real, media = mini.state.manifests[info["attestation"]["digest"]]
    m = json.loads(real)
    m["layers"][0].update(digest=info["archive"]["digest"] if names == "archive" else envelope)
    m["layers"][0]["size"] = 1
    body = json.dumps(m).encode()
    junk = "sha256:" + hashlib.sha256(body).hexdigest()
    mini.state.manifests[junk] = (body, media)
    listing = mini.state.referrers[info["digest"]]
    entry = {"mediaType": media, "digest": junk, "size": len(body)}
    listing.insert(len(listing) if names == "envelope" else 0, entry)
    if names == "envelope":  # the real one first, so the envelope is cached when the junk comes
        listing.insert(0, listing.pop(-2))
    got = inproc(
        "archive", "pull", f"oci://{mini.host}/t/runs:r1", "-o", "out.zip", "--json", cwd=tmp_path
    )
    assert got.returncode == 0, got.stdout + got.stderr
    doc = _json(got)["details"]
    assert (tmp_path / "out.zip").read_bytes() == shared["archive_file"].read_bytes()
    assert (tmp_path / "out.intoto.json").read_bytes() == shared["attestation"].read_bytes()
    if names == "archive":
        assert doc["referrers_skipped"] == [
            {"digest": junk, "code": "REGISTRY_DIGEST_MISMATCH", "reason": "SIZE"}
        ]
    held = _cache_blobs()
    assert info["archive"]["digest"].split(":")[1] in held and envelope.split(":")[1] in held


def test_a_sound_entry_is_hashed_once_however_many_descriptors_lie_about_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """256 junk referrers naming a 4 GiB archive's blob with another size cost 256 hashes of
    it, with nothing downloaded to count against the pull's budget. The hash itself is the
    real one; the wrapper only counts its calls."""
    from catalytic_hooks.core.errors import CatalyticError
    from catalytic_hooks.registry import cache as cache_mod
    from catalytic_hooks.registry.cache import Cache

    calls: list[int] = []
    real = cache_mod.sha256_fd

    def counted(fd: int) -> str:
        calls.append(fd)
        return real(fd)

    monkeypatch.setattr(cache_mod, "sha256_fd", counted)
    data = os.urandom(1 << 20)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    for first_size in (len(data), 1):  # found sound first, or first met through a lie
        cache = Cache(tmp_path / f"cache-{first_size}")
        cache.get(digest, 1)  # makes the directories
        entry = cache.path(digest)
        entry.write_bytes(data)
        entry.chmod(0o600)
        calls.clear()
        if first_size == len(data):
            assert cache.get(digest, len(data)) == entry
        for _ in range(64):
            with pytest.raises(CatalyticError) as refused:
                cache.get(digest, 1)
            assert refused.value.details["reason"] == "SIZE"
        assert len(calls) == 1, len(calls)  # the check of the size asked for hashes nothing
        assert entry.read_bytes() == data


def test_a_pull_refused_for_an_attestation_file_that_exists_writes_nothing(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """Every file a pull would write is checked before the first is written: before the fix
    the archive was placed first and the pull refused only at its attestation, leaving an
    archive that made the next pull refuse as well."""
    _push_mini(shared, mini, tmp_path)
    planted = tmp_path / "o.intoto.json"
    planted.write_bytes(b"the user's own file")
    got = inproc(
        "archive", "pull", f"oci://{mini.host}/t/runs:r1", "-o", "o.zip", "--json", cwd=tmp_path
    )
    assert got.returncode == 2, got.stdout + got.stderr
    doc = _json(got)
    assert (doc["code"], doc["details"]["path"]) == ("USAGE", "o.intoto.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.intoto.json"]
    assert planted.read_bytes() == b"the user's own file"


def test_a_pull_into_a_directory_that_does_not_exist_downloads_nothing(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """Refused before the download (before the fix, after the whole blob had come down)."""
    _push_mini(shared, mini, tmp_path)
    got = inproc(
        "archive",
        "pull",
        f"oci://{mini.host}/t/runs:r1",
        "-o",
        "no/such/dir/o.zip",
        "--json",
        cwd=tmp_path,
    )
    doc = _json(got)
    assert (got.returncode, doc["code"], doc["details"]["path"]) == (
        2,
        "PATH_INVALID",
        "no/such/dir",
    )
    assert _cache_blobs() == []
    assert not (tmp_path / "no").exists()


def test_a_pull_onto_another_file_system_copies(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """`-o` on another file system than the cache (a tmpfs here): no hard link is possible, and
    copy_file_range(2) refuses across file systems (EXDEV) on Linux before 5.3 and from 5.19;
    the bytes are then copied through a buffer. Before the fix the pull failed with IO_ERROR
    whenever the output was not on the cache's file system (where the kernel refuses; between
    5.3 and 5.18 it copies, and this test passes either way)."""
    _push_mini(shared, mini, tmp_path)
    with on_another_file_system(Path(os.environ["HOME"])) as where:
        out = where / "o.zip"
        got = inproc(
            "archive",
            "pull",
            f"oci://{mini.host}/t/runs:r1",
            "-o",
            str(out),
            "--json",
            cwd=tmp_path,
        )
        assert got.returncode == 0, got.stdout + got.stderr
        assert out.read_bytes() == shared["archive_file"].read_bytes()
        assert (where / "o.intoto.json").read_bytes() == shared["attestation"].read_bytes()
        assert out.stat().st_nlink == 1  # a copy, not the cache's inode
        assert sorted(p.name for p in where.iterdir()) == ["o.intoto.json", "o.zip"]


def test_a_pull_refused_while_it_places_its_files_removes_those_it_placed(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All or nothing after the check too: the attestation's destination is taken by another
    process between the check and the write (a race no test can time, so the file is created
    from inside the placing of the archive: the fault injected, not the file system mocked).
    The archive already placed is removed; the other process's file is left alone."""
    from catalytic_hooks.registry import pull

    _push_mini(shared, mini, tmp_path)
    real = pull._write_new
    theirs = tmp_path / "o.intoto.json"

    def racing(src: Path, dest: Path) -> None:
        real(src, dest)
        if dest.name == "o.zip":
            theirs.write_bytes(b"another process")

    monkeypatch.setattr(pull, "_write_new", racing)
    got = inproc(
        "archive", "pull", f"oci://{mini.host}/t/runs:r1", "-o", "o.zip", "--json", cwd=tmp_path
    )
    assert got.returncode == 2, got.stdout + got.stderr
    assert _json(got)["code"] == "USAGE"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.intoto.json"]
    assert theirs.read_bytes() == b"another process"


def _spoiled(kit: dict[str, Path], tmp_path: Path) -> Path:
    """The shared archive with one byte of a stored object flipped: structurally sound, so
    `archive push` publishes it, and refused by every consumer when its hashes are checked."""
    import struct
    import zipfile

    data = bytearray(kit["archive_file"].read_bytes())
    with zipfile.ZipFile(kit["archive_file"]) as z:
        entry = next(i for i in z.infolist() if "/objects/sha256/" in i.filename and i.file_size)
    name_len, extra_len = struct.unpack(
        "<HH", data[entry.header_offset + 26 : entry.header_offset + 30]
    )
    data[entry.header_offset + 30 + name_len + extra_len] ^= 0x20
    out = tmp_path / "spoiled" / "r1.catalytic.zip"
    out.parent.mkdir()
    out.write_bytes(bytes(data))
    return out


def test_a_pulled_archive_that_fails_its_checks_is_never_copied_into_a_quarantine(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """`replay` and `validate` quarantine a local archive that fails its integrity checks
    (moved out of the way, never deleted). Before the fix an archive pulled from a registry
    was "quarantined" too: a copy of the registry's bytes (up to 4 GiB) in the repository on
    every run, which a registry serving a broken archive could grow night after night. Now
    the refusal is the same and nothing is written beside the repository's reports."""
    spoiled = _spoiled(shared, tmp_path)
    ref = f"oci://{mini.host}/t/spoiled"
    push = inproc("archive", "push", str(spoiled), f"{ref}:r1", "--no-attestation", cwd=tmp_path)
    assert push.returncode == 0, push.stdout + push.stderr
    quarantine = shared["repo"] / ".catalytic/quarantine"
    before = sorted(quarantine.iterdir()) if quarantine.is_dir() else []
    trust = ("--trust-file", str(shared["trust"]), "--json")
    rp = inproc("replay", f"{ref}:r1", *trust, cwd=shared["repo"])
    assert rp.returncode == 1, rp.stdout + rp.stderr
    doc = _json(rp)
    assert (doc["code"], doc["details"]["reason"]) == ("ARCHIVE_INVALID", "CRC_MISMATCH"), doc
    assert "quarantine" not in doc["details"]
    v = inproc("validate", ref, *trust, cwd=shared["repo"])
    assert v.returncode == 1, v.stdout + v.stderr
    row = _json(v)["details"]["results"][0]
    assert (row["verdict"], row["quarantine"]) == ("failed", None)
    assert row["reason"].startswith("CRC_MISMATCH: "), row
    assert (sorted(quarantine.iterdir()) if quarantine.is_dir() else []) == before
    # A local copy of the same bytes is still quarantined, as ever.
    local = inproc("replay", str(spoiled), *trust, cwd=shared["repo"])
    assert local.returncode == 1 and Path(_json(local)["details"]["quarantine"]).is_file()
    assert not spoiled.exists()


def test_an_attestation_past_a_proxys_cap_on_bodies_goes_up_in_chunks(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """A proxy before the registry caps request bodies below the attestation's size (nginx's
    default is 1 MiB; an envelope may be 16 MiB): the envelope goes up in PATCH chunks after
    the 413, as the archive does. Before the fix it went up in one PUT only, and the
    push failed after the tag already named the run."""
    size = len(shared["attestation"].read_bytes())
    mini.state.faults.update(max_body=size - 1, patch="ok")
    info = _push_mini(shared, mini, tmp_path)
    assert info["attestation"]["via"] == "referrers-api"
    envelope = "sha256:" + hashlib.sha256(shared["attestation"].read_bytes()).hexdigest()
    assert mini.state.blobs[envelope] == shared["attestation"].read_bytes()
    assert sum(mini.state.patches) >= size  # the archive's chunks and the envelope's
    rc, doc = _verify_attested(info["reference"], shared, tmp_path)
    assert (rc, doc["code"]) == (0, "PASS"), doc


def test_an_attestation_the_registry_refuses_leaves_the_tag_unmoved(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """Every blob goes up before the tag is written: an envelope the registry refuses (a cap
    on bodies, no chunked uploads) fails the push with the tag unmoved, never a tag that names
    a run whose attestation did not arrive."""
    _push_mini(shared, mini, tmp_path, "--no-attestation")  # the archive's blob is there
    mini.state.faults["max_body"] = len(shared["attestation"].read_bytes()) - 1
    ref = f"oci://{mini.host}/t/runs:second"
    got = inproc("archive", "push", str(shared["archive_file"]), ref, "--json", cwd=tmp_path)
    assert got.returncode == 2, got.stdout + got.stderr
    doc = _json(got)
    assert (doc["code"], doc["details"].get("status")) == ("REGISTRY_FAILED", 413), doc
    assert "second" not in mini.state.tags


def test_an_attestation_that_cannot_be_attached_leaves_the_tag_unmoved(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    tmp_path: Path,
) -> None:
    """The archive's manifest goes up by digest, the attestation is attached, and only then
    is the tag written: an attach that fails (here the fallback tag refused, 403) leaves the
    tag where it was. Before the fix the tag was written first and named a run whose
    attestation was never attached (`verify --attested` on it failed until the next push)."""
    reg = MiniRegistry(referrers_api=False).start()
    try:
        probe = _push_mini(shared, reg, tmp_path, "--no-attestation")  # the same manifest
        fallback = "sha256-" + probe["digest"].split(":")[1]
        reg.state.faults["answers"] = {f"/v2/t/runs/manifests/{fallback}": (403, {}, b"")}
        rc, doc = _push_json(shared, f"oci://{reg.host}/t/runs:second", tmp_path)
        assert (rc, doc["code"], doc["details"]["reason"]) == (2, "REGISTRY_AUTH", "DENIED"), doc
        assert "second" not in reg.state.tags and "r1" in reg.state.tags
    finally:
        reg.stop()


def test_a_manifest_the_registry_says_it_stored_differently_is_refused(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """A PUT of the attestation's manifest answered with another `Docker-Content-Digest`: what
    was published is not what was sent, so the push fails (before the fix only the
    archive's manifest was checked, and this push passed)."""
    info = _push_mini(shared, mini, tmp_path)
    att = info["attestation"]["digest"]
    mini.state.faults["answers"] = {
        f"/v2/t/runs/manifests/{att}": (201, {"Docker-Content-Digest": "sha256:" + "0" * 64}, b"")
    }
    got = inproc(
        "archive",
        "push",
        str(shared["archive_file"]),
        f"oci://{mini.host}/t/runs",
        "--json",
        cwd=tmp_path,
    )
    assert got.returncode == 1, got.stdout + got.stderr
    doc = _json(got)
    assert (doc["code"], doc["details"]["reason"]) == ("REGISTRY_DIGEST_MISMATCH", "DIGEST")
    assert att in doc["message"] and "sha256:" + "0" * 64 in doc["message"]


def test_an_upload_location_with_a_fragment_keeps_the_digest(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """An upload's Location with a `#fragment`: the fragment is dropped (it is never sent), so
    the closing PUT's `?digest=` is a query. Before the fix the digest was appended
    after the fragment, and the PUT went out without it."""
    mini.state.faults["answers"] = {
        "/v2/t/runs/blobs/uploads/": (202, {"Location": "/v2/t/runs/blobs/uploads/u1#part"}, b"")
    }
    info = _push_mini(shared, mini, tmp_path, "--no-attestation")
    assert mini.state.blobs[info["archive"]["digest"]] == shared["archive_file"].read_bytes()


def test_a_chunked_upload_kept_on_storage_elsewhere_stays_there(
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    storage: MiniRegistry,
    tmp_path: Path,
) -> None:
    """The registry opens the upload on another server (its storage), whose answers give each
    next `Location` relative to themselves, as servers do: each is resolved against the URL
    that answered, so every chunk and the closing PUT go to the storage. Before the fix they
    were resolved against the registry's own URL, and the second chunk went to the registry."""
    from catalytic_hooks.registry.client import Client
    from catalytic_hooks.registry.reference import parse

    storage.state.faults["patch"] = "ok"
    mini.state.faults["answers"] = {
        "/v2/t/runs/blobs/uploads/": (
            202,
            {"Location": f"http://{storage.host}/v2/t/runs/blobs/uploads/s1"},
            b"",
        )
    }
    data = os.urandom(3 * 1024 * 1024)
    path = tmp_path / "blob"
    path.write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client = Client(parse(f"oci://{mini.host}/t/runs:x"))
    client.chunk_size = 1024 * 1024
    client.upload(digest, path, len(data))
    client.close()
    assert storage.state.blobs[digest] == data
    assert storage.state.patches == [1024 * 1024] * 3


def test_a_token_realm_with_no_path_is_asked_at_the_root(
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """A realm (or redirect) URL with no path: the request line names `/`, as any HTTP client
    sends it; before the fix it was `GET ?service=... HTTP/1.1`, which no server
    takes."""
    lines: list[bytes] = []
    tokens = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = tokens.accept()
        with conn:
            lines.append(conn.recv(65536).split(b"\r\n")[0])
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    realm = f"http://127.0.0.1:{tokens.getsockname()[1]}"
    mini.state.faults["answers"] = {MANIFEST_PATH: _challenge(realm)}
    got = inproc("archive", "pull", f"oci://{mini.host}/t/runs:r1", "--json", cwd=tmp_path)
    thread.join(10)
    tokens.close()
    assert _json(got)["code"] == "REGISTRY_AUTH", got.stdout
    assert lines and lines[0].startswith(b"GET /?service=mini"), lines


# -- the verified cache on a machine shared with other users -----------------------------------


def _as_root() -> None:
    """These cases need files owned by another user, which only root can make."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root, which these tests need to make another user's files")
        pytest.skip("making another user's files needs root")


def _push_json(kit: dict[str, Path], ref: str, cwd: Path) -> tuple[int, dict]:
    got = inproc("archive", "push", str(kit["archive_file"]), ref, "--json", cwd=cwd)
    return got.returncode, _json(got)


def _pull_json(ref: str, cwd: Path, out: str = "out.zip") -> tuple[int, dict]:
    got = inproc("archive", "pull", ref, "-o", out, "--json", cwd=cwd)
    return got.returncode, _json(got)


def test_a_cache_another_user_made_is_refused_and_never_read(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another user (uid 1002) made the cache's directories first, world-writable, in a shared
    sticky directory the victim's XDG_CACHE_HOME names, and planted the archive's true bytes
    as the entry, a file of theirs. Before the fix the pull linked that inode into place as
    the victim's out.zip, which uid 1002 could then rewrite. Now the cache is refused before
    anything is read or written."""
    _as_root()
    info = _push_mini(shared, mini, tmp_path)
    shared_dir = tmp_path / "shared"
    shared_dir.mkdir()
    shared_dir.chmod(0o1777)
    oci = shared_dir / "catalytic" / "oci"
    blob = oci / "blobs" / "sha256" / info["archive"]["digest"].split(":")[1]
    blob.parent.mkdir(parents=True)
    (oci / "tmp").mkdir()
    blob.write_bytes(shared["archive_file"].read_bytes())
    for p in (shared_dir / "catalytic", oci, oci / "blobs", blob.parent, oci / "tmp", blob):
        os.chown(p, 1002, 1002)
        p.chmod(0o666 if p == blob else 0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared_dir))
    rc, doc = _pull_json(f"oci://{mini.host}/t/runs:r1", tmp_path)
    assert (rc, doc["code"], doc["details"]["reason"]) == (2, "PATH_INVALID", "CACHE_UNSAFE"), doc
    assert doc["details"]["path"] == str(shared_dir / "catalytic")
    assert not (tmp_path / "out.zip").exists()
    assert blob.stat().st_uid == 1002 and blob.stat().st_nlink == 1


@pytest.mark.parametrize("how", ["owner", "mode"])
def test_an_entry_another_user_owns_or_may_write_is_never_served(
    how: str,
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """In the user's own cache, an entry whose bytes are right but that another user owns, or
    may write (`chmod 666` of the file `archive pull -o` linked to it), could be rewritten at
    any time: it is fetched again, not served."""
    if how == "owner":
        _as_root()
    info = _push_mini(shared, mini, tmp_path)
    ref = f"oci://{mini.host}/t/runs:r1"
    assert _pull_json(ref, tmp_path)[0] == 0
    hexd = info["archive"]["digest"].split(":")[1]
    entry = Path(os.environ["HOME"]) / ".cache/catalytic/oci/blobs/sha256" / hexd
    if how == "owner":
        os.chown(entry, 1002, 1002)
    else:
        (tmp_path / "out.zip").chmod(0o666)  # the same inode as the entry
    rc, doc = _pull_json(ref, tmp_path, "again.zip")
    assert rc == 0, doc
    assert doc["details"]["bytes_downloaded"] > entry.stat().st_size  # fetched again
    st = entry.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (os.geteuid(), 0o600)
    assert (tmp_path / "again.zip").read_bytes() == shared["archive_file"].read_bytes()


def test_cache_directories_left_writable_by_the_group_are_narrowed(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under umask 002 (the default where every user has a group of their own) a `mkdir -p`
    makes every level group-writable, the cache directory itself included: how the cache was
    made before the fix. The user's own directories are narrowed on the next use, and the pull
    goes on."""
    _push_mini(shared, mini, tmp_path)
    base = tmp_path / "cache"
    (base / "catalytic/oci/blobs/sha256").mkdir(parents=True)
    (base / "catalytic/oci/tmp").mkdir()
    older = [base, *base.rglob("*")]
    for p in older:
        p.chmod(0o775)
    monkeypatch.setenv("XDG_CACHE_HOME", str(base))
    assert _pull_json(f"oci://{mini.host}/t/runs:r1", tmp_path)[0] == 0
    for p in older:
        assert p.stat().st_mode & 0o777 == 0o755, p
    for p in base.rglob("*"):  # what the pull made itself (pushes/), the user's alone
        if p.is_dir() and p not in older:
            assert p.stat().st_mode & 0o777 == 0o700, p


@pytest.mark.parametrize("sticky", [False, True])
def test_a_cache_directory_another_user_may_write_is_refused_unless_sticky(
    sticky: bool,
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """XDG_CACHE_HOME names a directory another user owns: refused, before anything is read
    or written. One that is root's and sticky, as /tmp is, is where no one renames what is not
    theirs: the cache may live there."""
    _as_root()
    _push_mini(shared, mini, tmp_path)
    base = tmp_path / "cache"
    base.mkdir()
    if sticky:
        base.chmod(0o1777)  # root's, as /tmp
    else:
        os.chown(base, 1002, 1002)
        base.chmod(0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(base))
    rc, doc = _pull_json(f"oci://{mini.host}/t/runs:r1", tmp_path)
    if sticky:
        assert rc == 0, doc
        assert (base / "catalytic").stat().st_mode & 0o777 == 0o700
        return
    assert (rc, doc["code"], doc["details"]["reason"]) == (2, "PATH_INVALID", "CACHE_UNSAFE"), doc
    assert "belongs to another user (uid 1002)" in doc["message"]
    assert list(base.iterdir()) == [] and not (tmp_path / "out.zip").exists()


def test_a_relative_xdg_cache_home_is_ignored(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The XDG base directory specification: a relative XDG_CACHE_HOME is invalid and ignored.
    Before the fix the cache went into the directory the command ran in (a repository's work
    tree, say)."""
    _push_mini(shared, mini, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", "relcache")
    assert _pull_json(f"oci://{mini.host}/t/runs:r1", work)[0] == 0
    assert sorted(p.name for p in work.iterdir()) == ["out.intoto.json", "out.zip"]
    assert _cache_blobs()  # in ~/.cache


def test_a_directory_where_a_cache_entry_goes_is_an_io_error(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """Before the fix a directory at `blobs/sha256/<hex>` ended in INTERNAL (exit 3)."""
    info = _push_mini(shared, mini, tmp_path)
    slot = Path(os.environ["HOME"]) / ".cache/catalytic/oci/blobs/sha256"
    (slot / info["archive"]["digest"].split(":")[1]).mkdir(parents=True)
    rc, doc = _pull_json(f"oci://{mini.host}/t/runs:r1", tmp_path)
    assert (rc, doc["code"]) == (2, "IO_ERROR"), doc
    assert not (tmp_path / "out.zip").exists()
    tmp = slot.parent.parent / "tmp"
    assert not any(p.name.endswith(".part") for p in tmp.iterdir())


# -- header values in messages -------------------------------------------------------------------

ESCAPE = "\x1b[2J\x1b[1;31mALL RUNS PASS\x1b[0m"


@pytest.mark.parametrize(
    ("header", "pinned", "rc", "code"),
    [
        ("Docker-Content-Digest", False, 1, "REGISTRY_DIGEST_MISMATCH"),
        ("Docker-Content-Digest", True, 1, "REGISTRY_TAG_MOVED"),
        ("WWW-Authenticate", False, 2, "REGISTRY_AUTH"),
    ],
)
def test_a_header_with_terminal_escapes_is_shown_escaped(
    header: str,
    pinned: bool,
    rc: int,
    code: str,
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """A registry's header values that messages quote (the digest it names, the scheme it asks
    for) reach the terminal escaped."""
    _archive_manifest(mini, b"archive bytes")
    digest = mini.state.tags["r1"]
    body, media = mini.state.manifests[digest]
    status = 401 if header == "WWW-Authenticate" else 200
    answer = (status, {header: ESCAPE, "Content-Type": media}, body if status == 200 else b"")
    mini.state.faults["answers"] = {MANIFEST_PATH: answer}
    ref = f"oci://{mini.host}/t/runs:r1" + (f"@{digest}" if pinned else "")
    got = inproc("archive", "pull", ref, "-o", "out.zip", cwd=tmp_path)
    assert got.returncode == rc, got.stdout + got.stderr
    assert got.stderr.startswith(f"error: {code}: ")
    assert "\x1b" not in got.stdout + got.stderr and "\\x1b[" in got.stderr
    assert _cache_blobs() == []
    _nothing_kept(tmp_path)


def test_a_malformed_entry_in_the_referrers_list_is_left_out_not_the_list(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """Entries that describe nothing (no digest, a size that is not a number, not an object)
    listed before the real attestation: it is still found, and they are counted."""
    info = _push_mini(shared, mini, tmp_path)
    listing = mini.state.referrers[info["digest"]]
    listing[:0] = [{"mediaType": "x"}, {"digest": "sha256:" + "a" * 64, "size": "1"}, 7]
    rc, doc = _verify_attested(info["reference"], shared, tmp_path)
    assert (rc, doc["code"]) == (0, "PASS"), doc
    row = doc["details"]["results"][0]
    assert row["attestations_malformed"] == 3
    assert [r["digest"] for r in row["attestations"]] == [info["attestation"]["digest"]]
    out = tmp_path / "pulled.zip"
    proc = inproc("archive", "pull", info["reference"], "-o", str(out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    pulled = json.loads(proc.stdout)["details"]
    assert pulled["referrers_malformed"] == 3 and len(pulled["attestations"]) == 1


def test_a_fallback_index_the_transfer_refused_is_never_rewritten(
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    tmp_path: Path,
) -> None:
    """Only what a list says is judged as junk: a fallback index whose answer the transfer
    refuses (here larger than any manifest a registry stores) fails the attach, instead of
    being taken for an empty list and rewritten with the new attestation alone, which would
    drop every referrer the index held."""
    reg = MiniRegistry(referrers_api=False).start()
    try:
        info = _push_mini(shared, reg, tmp_path, "--no-attestation")
        tag = "sha256-" + info["digest"].split(":")[1]
        reg.state.faults["answers"] = {
            f"/v2/t/runs/manifests/{tag}": (
                200,
                {"Content-Type": "application/vnd.oci.image.index.v1+json"},
                b"x" * (5 * 1024 * 1024),
            )
        }
        rc, doc = _push_json(shared, f"oci://{reg.host}/t/runs", tmp_path)
        assert (rc, doc["code"], doc["details"]["reason"]) == (1, "REGISTRY_INVALID", "TOO_LARGE")
        assert tag not in reg.state.tags  # never written
    finally:
        reg.stop()


@pytest.mark.parametrize(
    "body",
    [b"garbage", b'{"schemaVersion": 2, "manifests": {}}', b'{"schemaVersion": 1}'],
    ids=["not-json", "manifests-not-a-list", "not-an-index"],
)
def test_a_referrers_list_that_is_no_index_is_no_referrers_not_the_end(
    body: bytes,
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """The referrers API answers something that is no index at all: the list is counted as one
    malformed entry and nothing is found in it; the pull goes on (before the fix it ended in
    REGISTRY_INVALID) and the verify finds no attestation attached."""
    info = _push_mini(shared, mini, tmp_path)
    mini.state.faults["answers"] = {
        f"/v2/t/runs/referrers/{info['digest']}": (
            200,
            {"Content-Type": "application/vnd.oci.image.index.v1+json"},
            body,
        )
    }
    got = inproc("archive", "pull", info["reference"], "-o", "out.zip", "--json", cwd=tmp_path)
    assert got.returncode == 0, got.stdout + got.stderr
    doc = _json(got)["details"]
    assert (doc["attestations"], doc["referrers_malformed"]) == ([], 1)
    assert (tmp_path / "out.zip").read_bytes() == shared["archive_file"].read_bytes()
    rc, v = _verify_attested(info["reference"], shared, tmp_path)
    assert (rc, v["code"]) == (1, "ATTESTATION_MISSING")


@pytest.mark.parametrize("stored", ["as-declared", "tampered", "manifests"])
def test_the_bytes_junk_referrers_may_cost_are_bounded(
    stored: str,
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a search downloads counts against MAX_REFERRER_BYTES (256 MiB), checked before each
    manifest is fetched: past it the search ends as at MAX_REFERRERS (REFERRER_LIMIT), whatever
    is listed after. Junk envelopes count whether they are refused after their digest checked
    (`as-declared`: junk that is not DSSE) or by it (`tampered`: the registry serves other
    bytes, which until the review were never counted, so 256 of 16 MiB cost 4 GiB); junk
    manifests count as well (`manifests`: refused as about another subject, which before the
    fix were downloaded past the limit, so 256 of 4 MiB cost 1 GiB). The limit is lowered
    here to 350,000 bytes (the same path; 256 MiB of junk would make a slow test)."""
    from catalytic_hooks.registry import pull

    monkeypatch.setattr(pull, "MAX_REFERRER_BYTES", 350_000)
    info = _push_mini(shared, mini, tmp_path)
    listing = mini.state.referrers[info["digest"]]
    real = listing.pop()
    if stored == "manifests":
        junk = [_junk(mini, info, "subject", i, pad=100_000) for i in range(5)]
    else:
        junk = [_junk(mini, info, "envelope", i, 100_000) for i in range(5)]
    listing.append(real)
    if stored == "tampered":
        for d in junk:
            layer = json.loads(mini.state.manifests[d][0])["layers"][0]["digest"]
            mini.state.blobs[layer] = b"t" * 100_000
    rc, doc = _verify_attested(info["reference"], shared, tmp_path)
    assert (rc, doc["code"], doc["details"]["reason"]) == (
        1,
        "ATTESTATION_MISSING",
        "REFERRER_LIMIT",
    )
    row = doc["details"]["results"][0]
    assert [r["digest"] for r in row["attestations"]] == junk[:3]
    assert row["attestations_unchecked"] == 3  # two junk referrers and the real one
    out = tmp_path / "pulled.zip"
    proc = inproc("archive", "pull", info["reference"], "-o", str(out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    pulled = json.loads(proc.stdout)["details"]
    assert pulled["referrers_unchecked"] == 3
    kept = 3 if stored == "as-declared" else 0
    reasons = [r["reason"] for r in pulled.get("referrers_skipped", [])]
    assert (len(pulled["attestations"]), reasons) == (
        kept,
        {"as-declared": [], "tampered": ["DIGEST"] * 3, "manifests": ["SUBJECT"] * 3}[stored],
    )
    # the archive, its manifest and three junk referrers; never a fourth of 100,000 bytes
    assert pulled["bytes_downloaded"] < out.stat().st_size + 3 * 100_000 + 100_000


# -- framing no registry sends, budgets, and this machine ----------------------------------------


class _RawRegistry:
    """One connection on loopback answered with `head`, then `tail` again and again until the
    client hangs up (or `most` bytes, or 30 s): broken HTTP framing, which http.server (the
    minimal registry) cannot be made to send. `sent`: the bytes that went out."""

    def __init__(self, head: bytes, tail: bytes, most: int = 256 << 20) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.head, self.tail, self.most, self.sent = head, tail, most, 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        deadline = time.monotonic() + 30
        try:
            conn.recv(65536)
            conn.sendall(self.head)
            self.sent += len(self.head)
            while self.sent < self.most and time.monotonic() < deadline:
                conn.sendall(self.tail)
                self.sent += len(self.tail)
        except OSError:
            pass  # the client hung up: what these tests want
        finally:
            conn.close()

    def stop(self) -> None:
        self.thread.join(35)
        self.listener.close()


_CHUNKED = (
    b"HTTP/1.1 %s\r\nContent-Type: " + OCI_MANIFEST.encode() + b"\r\n"
    b'WWW-Authenticate: Basic realm="r"\r\nTransfer-Encoding: chunked\r\n\r\n'
)
_PAD = b"X-Pad: " + b"a" * 60000 + b"\r\n"
# case: (head, tail, exit status, code, reason). Before the answer budget, the first two read
# the socket to its end into memory (256 MiB here; a GiB took 2 GiB of memory, then INTERNAL)
# and the last two were read for as long as the registry kept sending.
ENDLESS: dict[str, tuple[bytes, bytes, int, str, str]] = {
    "negative-chunk-size": (
        _CHUNKED % b"200 OK" + b"-1\r\n",
        b" " * 65536,
        1,
        "REGISTRY_INVALID",
        "MALFORMED",
    ),
    "negative-chunk-size-of-a-401": (
        _CHUNKED % b"401 Unauthorized" + b"-1\r\n",
        b" " * 65536,
        2,
        "REGISTRY_AUTH",
        "REQUIRED",
    ),
    "trailer-lines-for-ever": (
        _CHUNKED % b"200 OK" + b"0\r\n",
        _PAD,
        1,
        "REGISTRY_INVALID",
        "TOO_LARGE",
    ),
    "100-continue-for-ever": (
        b"",
        b"HTTP/1.1 100 Continue\r\n" + _PAD + b"\r\n",
        1,
        "REGISTRY_INVALID",
        "TOO_LARGE",
    ),
}


@pytest.mark.parametrize("case", list(ENDLESS))
def test_an_answer_that_never_ends_is_cut_off(case: str, tmp_path: Path) -> None:
    """http.client reads interim answers, chunk framing and trailers itself, with no limit: each
    answer is now read through a budget (its body's limit, a sixteenth more for framing, and 8
    MiB for headers), so the registry gets to send a bounded amount and the pull ends in a code
    instead of reading for ever or filling memory."""
    head, tail, rc, code, reason = ENDLESS[case]
    server = _RawRegistry(head, tail)
    try:
        got = inproc(
            "archive",
            "pull",
            f"oci://{server.host}/t/runs:r1",
            "-o",
            "out.zip",
            "--json",
            cwd=tmp_path,
        )
    finally:
        server.stop()
    doc = _json(got)
    assert (got.returncode, doc["code"], doc["details"].get("reason")) == (rc, code, reason), doc
    # 12.25 MiB of budget, and what the kernel's socket buffers held when the client hung up
    assert server.sent < 32 << 20, server.sent
    assert _cache_blobs() == []
    _nothing_kept(tmp_path)


def _address_elsewhere() -> str:
    """This machine's address on its network, not loopback: the source of its route towards
    TEST-NET-1 (connecting a UDP socket sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address = str(probe.getsockname()[0])
        except OSError:
            address = "127.0.0.1"
    if ipaddress.ip_address(address).is_loopback:
        if os.environ.get("CI"):
            pytest.fail("CI must have a network address besides loopback for this test")
        pytest.skip("no network address here besides loopback to serve a registry elsewhere on")
    return address


@pytest.fixture
def remote() -> Iterator[MiniRegistry]:
    """A registry elsewhere: on this machine's network address, reached with --insecure."""
    reg = MiniRegistry(address=_address_elsewhere()).start()
    yield reg
    reg.stop()


@pytest.mark.parametrize(
    "target",
    [
        "redirect:http://127.0.0.1:{port}",
        "redirect:http://localhost:{port}",
        "redirect:http://2130706433:{port}",  # 127.0.0.1 as one number: no loopback by its name
        "realm:http://127.0.0.1:{port}/token",
        # Over HTTPS the address is judged before the TLS handshake: before the fix the
        # listener here received the client's ClientHello first (the refusal was then TLS).
        "redirect:https://2130706433:{port}",
        "realm:https://2130706433:{port}/token",
    ],
)
def test_a_registry_elsewhere_cannot_send_the_client_to_this_machine(
    target: str, remote: MiniRegistry, tmp_path: Path
) -> None:
    """Plain HTTP is allowed on loopback because the user's own loopback registry is; a registry
    on the network that redirects a read, or names a token service, on this machine would have
    the client send requests to services that listen only here. Refused before a byte of any
    request reaches them: by the name, or by the address connected to."""
    here = socket.create_server(("127.0.0.1", 0))
    here.setblocking(False)
    sent = target.format(port=here.getsockname()[1])
    assert _pulled_sent_to(remote, sent, tmp_path) == (2, "REGISTRY_FAILED", "LOOPBACK")
    assert _received(here) == b""
    _nothing_kept(tmp_path)


def _pulled_sent_to(remote: MiniRegistry, target: str, tmp_path: Path) -> tuple[int, str, str]:
    """(exit status, code, reason) of pulling `remote`'s r1 when its manifest's answer sends
    the client to `target`: `redirect:URL` or `realm:URL` (a token service)."""
    kind, url = target.split(":", 1)
    remote.state.faults["answers"] = {
        MANIFEST_PATH: _challenge(url) if kind == "realm" else _redirect(url + MANIFEST_PATH)
    }
    ref = f"oci://{remote.host}/t/runs:r1"
    got = inproc("archive", "pull", ref, "-o", "out.zip", "--insecure", "--json", cwd=tmp_path)
    doc = _json(got)
    return got.returncode, doc["code"], doc["details"].get("reason")


def _received(here: socket.socket) -> bytes:
    """Every byte that reached the listening, non-blocking socket `here`, which is closed."""
    received = b""
    with here:
        while True:
            try:
                conn, _ = here.accept()
            except BlockingIOError:
                return received
            with conn:
                conn.settimeout(5)
                received += conn.recv(65536)


@pytest.mark.parametrize(
    "target",
    [
        "redirect:http://169.254.169.254",
        "redirect:http://[::ffff:169.254.169.254]",
        "redirect:https://[fe80::1]",
        "realm:http://169.254.169.254/token",
        # metadata services outside the link-local network: Alibaba Cloud's, AWS's over IPv6
        "redirect:http://100.100.100.200",
        "redirect:http://[fd00:ec2::254]",
    ],
)
def test_a_registry_elsewhere_cannot_send_the_client_to_the_link_local_network(
    target: str, remote: MiniRegistry, tmp_path: Path
) -> None:
    """169.254.169.254 is where clouds serve an instance's metadata and credentials, to the
    instance alone: a registry elsewhere that redirects there (plain HTTP with --insecure) would
    have the client fetch them. Refused before any connection, by the address as written."""
    assert _pulled_sent_to(remote, target, tmp_path) == (2, "REGISTRY_FAILED", "LINK_LOCAL")
    _nothing_kept(tmp_path)


def _link_local_here() -> str | None:
    """This machine's IPv6 link-local address with its interface (`fe80::…%eth0`), if any."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            hexaddr, _, _, scope, _, name = line.split()
            if int(scope, 16) == 0x20:
                return f"{ipaddress.IPv6Address(int(hexaddr, 16))}%{name}"
    return None


@pytest.mark.parametrize("turned", ["loopback", "link-local"])
def test_the_registrys_own_name_cannot_turn_into_this_machine_between_connections(
    turned: str,
    shared: dict[str, Path],  # noqa: F811 (the fixtures imported above)
    remote: MiniRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: the registry's name resolves to the registry for the first connection and
    to 127.0.0.1 (or a link-local address of this machine) for the next (the registry closed
    the first after the manifest). The next request, credentials included, would reach
    whatever listens on that port there; it is refused before a byte is sent (the link-local
    case before the fix was not). The resolver's two answers are injected
    (getaddrinfo), since changing the answers of a name needs a DNS server and this machine's
    resolver configuration; the connections, the registry and the listener are real."""
    if turned == "link-local":
        target = _link_local_here()
        if target is None:
            # containers often run without IPv6; the loopback case runs everywhere
            pytest.skip("this machine has no IPv6 link-local address to listen on")
        where = socket.getaddrinfo(target, int(remote.host.rsplit(":", 1)[1]), socket.AF_INET6)
        here = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        here.bind(where[0][4])  # with its scope: the interface the address belongs to
        here.listen()
    else:
        target = "127.0.0.1"
        here = socket.create_server((target, int(remote.host.rsplit(":", 1)[1])))
    info = _push_mini(shared, remote, tmp_path, "--insecure", "--no-attestation")
    body, media = remote.state.manifests[info["digest"]]
    remote.state.faults["answers"] = {
        MANIFEST_PATH: (200, {"Content-Type": media, "Connection": "close"}, body)
    }
    address, port = remote.host.rsplit(":", 1)
    here.setblocking(False)
    real = socket.getaddrinfo
    answers = [address]

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            host = answers.pop(0) if answers else target
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    ref = f"oci://rebind.test:{port}/t/runs:r1"
    got = inproc("archive", "pull", ref, "-o", "out.zip", "--insecure", "--json", cwd=tmp_path)
    doc = _json(got)
    reason = "LOOPBACK" if turned == "loopback" else "LINK_LOCAL"
    assert (got.returncode, doc["code"], doc["details"]["reason"]) == (
        2,
        "REGISTRY_FAILED",
        reason,
    ), doc
    assert answers == []  # the first connection went to the registry
    assert _received(here) == b""
    _nothing_kept(tmp_path)


def test_a_401_from_storage_names_the_storage_not_the_registry(
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    storage: MiniRegistry,
    tmp_path: Path,
) -> None:
    """No credential of ours goes to storage a registry redirects to, so its 401 is not the
    registry refusing them (which the message said), nor a login to run."""
    digest = _archive_manifest(mini, b"x" * 1000)
    asked = f"/v2/t/runs/blobs/{digest}"
    mini.state.faults["answers"] = {asked: _redirect(f"http://{storage.host}/bucket/blob")}
    storage.state.faults["answers"] = {"/bucket/blob": (401, {"WWW-Authenticate": "Basic"}, b"")}
    got = inproc(
        "archive", "pull", f"oci://{mini.host}/t/runs:r1", "-o", "out.zip", "--json", cwd=tmp_path
    )
    doc = _json(got)
    assert (doc["code"], doc["details"]["reason"], doc["details"]["status"]) == (
        "REGISTRY_AUTH",
        "REFUSED",
        401,
    )
    assert doc["message"] == (
        f"http://{storage.host}, where the registry {mini.host} sent this client, refused "
        f"the blob {digest} (401)"
    )
    _nothing_kept(tmp_path)


def test_a_run_id_annotation_that_is_no_tag_is_never_shown(
    mini: MiniRegistry,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """The run id in a manifest's annotation is the registry's word: shown (and used as the
    file's name) only when it has a tag's shape; terminal escapes, bidi overrides and a MiB of
    text never reach the output."""
    data = b"archive bytes" * 100
    hostile = "release\x9b2J\u202eEVIL" + "x" * (1 << 20)
    digest = _archive_manifest(mini, data, run_id=hostile)
    mini.state.blobs[digest] = data
    got = inproc("archive", "pull", f"oci://{mini.host}/t/runs:r1", "--json", cwd=tmp_path)
    assert got.returncode == 0, got.stdout
    assert "\x9b" not in got.stdout and "\u202e" not in got.stdout and len(got.stdout) < 4096
    pulled = _json(got)["details"]
    stem = digest.split(":")[1][:16]
    assert pulled["run_id"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{stem}.catalytic.zip"]
    assert (tmp_path / f"{stem}.catalytic.zip").read_bytes() == data


def test_tcp_urgent_data_in_a_blob_is_refused_not_spun_on(tmp_path: Path) -> None:
    """A byte sent as TCP urgent data (MSG_OOB) in the middle of a blob, the connection then
    held open: the kernel's splice stops at the urgent mark and moves nothing while poll keeps
    saying the socket is readable, which spun the pull at full CPU past its timeout for ever.
    Now it is refused as broken framing, well before the timeout (TIMEOUT would say it
    waited), and nothing is cached."""
    from catalytic_hooks.core.errors import CatalyticError
    from catalytic_hooks.registry.cache import Cache
    from catalytic_hooks.registry.client import Client
    from catalytic_hooks.registry.reference import parse

    size = 4 * 1024 * 1024
    data = os.urandom(size)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):  # the client hanging up early ends it too
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            time.sleep(0.2)  # the headers alone in http.client's buffer: the rest is spliced
            conn.sendall(data[:100_000])
            time.sleep(0.2)
            conn.send(b"X", socket.MSG_OOB)
            conn.sendall(data[100_000:200_000])
            done.wait(60)  # open, silent

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    client = Client(parse(f"oci://127.0.0.1:{listener.getsockname()[1]}/t/r:x"), timeout=20.0)
    cache = Cache(tmp_path / "cache")
    try:
        with pytest.raises(CatalyticError) as refused:
            cache.store(client.get_blob(digest, size), digest, size)
    finally:
        done.set()
        client.close()
        server.join(5)
        listener.close()
    assert refused.value.code.value == "REGISTRY_INVALID"
    assert refused.value.details["reason"] == "MALFORMED"
    assert not cache.path(digest).exists() and list((tmp_path / "cache/tmp").iterdir()) == []


# -- a hostile Docker config or credential helper ends in a code ------------------------------


class _Always401(http.server.BaseHTTPRequestHandler):
    """A registry that asks for Basic credentials on every request."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="r"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET


HOSTILE_CONFIGS = {
    "nested": "[" * 100_000,
    "non-ascii-auth": '{"auths":{"HOST":{"auth":"\\u00e9"}}}',
    "surrogate-password": '{"auths":{"HOST":{"username":"alice","password":"s3cr\\ud800et"}}}',
    "surrogate-identitytoken": '{"auths":{"HOST":{"identitytoken":"s3cr\\ud800et"}}}',
    "helper-nested": '{"credHelpers":{"HOST":"evil"}}',
    "helper-surrogate": '{"credHelpers":{"HOST":"evil"}}',
}
HELPER_ANSWERS = {
    "helper-nested": "python3 -c \"print('[' * 100000)\"\n",
    "helper-surrogate": 'printf \'%s\' \'{"Username":"u","Secret":"s3cr\\ud800et"}\'\n',
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CONFIGS))
def test_a_hostile_registry_config_or_helper_is_a_coded_error(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON nested past the parser, a non-ASCII `auth`, a lone surrogate in a password, token
    or helper answer: each ended INTERNAL (exit 3), the surrogate's error quoting the secret's
    position. Each is now REGISTRY_AUTH or CONFIG_INVALID, the secret nowhere."""
    if case in HELPER_ANSWERS:
        helper = tmp_path / "bin/docker-credential-evil"
        helper.parent.mkdir()
        helper.write_text("#!/bin/sh\n" + HELPER_ANSWERS[case])
        helper.chmod(0o755)
        monkeypatch.setenv("PATH", os.pathsep.join([str(helper.parent), "/usr/bin", "/bin"]))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always401)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{srv.server_address[1]}"
    config = tmp_path / "config.json"
    config.write_bytes(HOSTILE_CONFIGS[case].replace("HOST", host).encode())
    try:
        got = inproc(
            "archive",
            "pull",
            f"oci://{host}/team/runs:r1",
            "--registry-config",
            str(config),
            "-o",
            str(tmp_path / "out.zip"),
            "--json",
            cwd=tmp_path,
        )
    finally:
        srv.shutdown()
    assert got.returncode == 2, got.stdout + got.stderr
    assert _json(got)["code"] in ("CONFIG_INVALID", "REGISTRY_AUTH"), got.stdout
    assert "s3cr" not in got.stdout + got.stderr and "position" not in got.stdout + got.stderr
    assert not (tmp_path / "out.zip").exists()
