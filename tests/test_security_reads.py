"""Issue 26, class 8: nothing unverified is read unsafely. Whatever a bundle, an envelope or a
TASK_SPEC puts where a file is expected (a FIFO, a link to /dev/zero, malformed JSON) or names as
a file to read (an absolute path, a device, a path out of the tree) ends the command with a
stable code (exit 1 or 2), in bounded time and memory, never with exit 3 or a traceback.

Every command runs as a real process with a timeout (a hang fails the test instead of hanging
it) and an address-space limit (a read of /dev/zero fails the test instead of the machine)."""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from catalytic_hooks.bundle.attest import ATTESTATION_FILE, PAYLOAD_TYPE, envelope, pae, statement
from catalytic_hooks.bundle.keys import signer_from_seed
from catalytic_hooks.core.canonical import canonical_bytes

from .helpers import SEED_A, make_bundle

POLICY = 'durable_roots = ["outputs"]\n'
TIMEOUT = 30
MEMORY = 2 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def run(*args: str, cwd: Path) -> tuple[int, dict[str, Any], str]:
    """(exit code, the --json document, stderr) of a real `catalytic` process."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "catalytic_hooks", *args, "--json"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"catalytic {' '.join(args)} hung (> {TIMEOUT} s)")
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode in (1, 2), (proc.returncode, proc.stdout, proc.stderr)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


@pytest.fixture
def attested(make_repo) -> Path:
    """A repository trusting validator A, with a bundle A signed and its attestation."""
    repo = make_repo(
        {
            "data/x.csv": "1\n",
            ".catalytic/allowed_validators": f"alice id:{signer_from_seed(SEED_A).validator_id}\n",
        },
        policy=POLICY,
    )
    make_bundle(repo / "_runs/r1", repo, {"outputs/r.txt": b"r\n"})
    # Written in this process (what `catalytic attest` writes, tests/test_attest.py runs that).
    env = envelope(statement(repo / "_runs/r1", repo), signer_from_seed(SEED_A))
    (repo / "_runs/r1" / ATTESTATION_FILE).write_bytes(canonical_bytes(env) + b"\n")
    return repo


def _plant(path: Path, what: str | bytes) -> None:
    """Replace the file at `path` with a FIFO, a link to /dev/zero, or the given bytes."""
    path.unlink()
    if what == "fifo":
        os.mkfifo(path)
    elif what == "zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_bytes(what.encode() if isinstance(what, str) else what)


BAD_FILES = [
    pytest.param("fifo", "ARTIFACT_MALFORMED", id="fifo"),
    pytest.param("zero", "ARTIFACT_MALFORMED", id="symlink-to-dev-zero"),
    pytest.param("{not json", "ARTIFACT_MALFORMED", id="not-json"),
    pytest.param("[]", "ARTIFACT_MALFORMED", id="json-list", marks=pytest.mark.slow),
    pytest.param("{}", "FIELD_MISSING", id="empty-object", marks=pytest.mark.slow),
    pytest.param(
        '{"algorithm": "ed25519", "public_key": "zz", "validator_id": "x"}',
        "KEY_INVALID",
        id="key-not-hex",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize(("what", "code"), BAD_FILES)
def test_verify_attestation_never_reads_an_unverified_identity(
    attested: Path, what: str, code: str
) -> None:
    _plant(attested / "_runs/r1/VALIDATOR_IDENTITY.json", what)
    rc, doc, _ = run(
        "verify", "_runs/r1", "--attestation", "_runs/r1/attestation.intoto.json", cwd=attested
    )
    assert (rc, doc["code"]) == (1, code), doc


@pytest.mark.parametrize(
    ("what", "code"),
    [
        pytest.param("fifo", "ARTIFACT_MALFORMED", id="fifo"),
        pytest.param(
            "zero", "ARTIFACT_MALFORMED", id="symlink-to-dev-zero", marks=pytest.mark.slow
        ),
        pytest.param("{not json", "ARTIFACT_MALFORMED", id="not-json", marks=pytest.mark.slow),
    ],
)
def test_a_hostile_envelope_file_is_refused(attested: Path, what: str, code: str) -> None:
    _plant(attested / "_runs/r1/attestation.intoto.json", what)
    rc, doc, _ = run(
        "verify", "_runs/r1", "--attestation", "_runs/r1/attestation.intoto.json", cwd=attested
    )
    assert (rc, doc["code"]) == (1, code), doc


def _shadowed_subject(attested: Path) -> bytes:
    """The real statement with a first `subject` naming other bytes: a parser that keeps the
    last duplicate sees the real subjects, one that keeps the first sees the forged one."""
    doc = json.loads((attested / "_runs/r1/attestation.intoto.json").read_text())
    real = base64.b64decode(doc["payload"])
    forged = json.dumps([{"name": "outputs/r.txt", "digest": {"sha256": "0" * 64}}])
    return b'{"subject":' + forged.encode() + b"," + real[1:]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda _: b"[" * 100_000 + b"]" * 100_000, id="nested-too-deep"),
        pytest.param(_shadowed_subject, id="duplicate-subject"),
    ],
)
def test_a_validly_signed_malformed_statement_is_refused(attested: Path, payload: Any) -> None:
    """Signed by the trusted key itself: only the statement's shape is wrong."""
    payload = payload(attested)
    s = signer_from_seed(SEED_A)
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [
            {
                "keyid": s.validator_id,
                "sig": base64.b64encode(s.key.sign(pae(PAYLOAD_TYPE, payload))).decode(),
            }
        ],
    }
    (attested / "evil.json").write_text(json.dumps(envelope))
    rc, doc, _ = run("verify", "_runs/r1", "--attestation", "evil.json", cwd=attested)
    assert (rc, doc["code"]) == (1, "ARTIFACT_MALFORMED"), doc


# -- env --compare RUN ----------------------------------------------------------------------


def _spec(run_dir: Path, environment: Any) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "TASK_SPEC.json").write_text(
        json.dumps({"task_id": run_dir.name, "environment": environment})
    )


@pytest.mark.parametrize(
    ("what", "code"),
    [
        pytest.param("fifo", "ARTIFACT_MALFORMED", id="fifo"),
        pytest.param(
            "zero", "ARTIFACT_MALFORMED", id="symlink-to-dev-zero", marks=pytest.mark.slow
        ),
        pytest.param("{not json", "ARTIFACT_MALFORMED", id="not-json", marks=pytest.mark.slow),
    ],
)
def test_env_compare_reads_the_task_spec_safely(
    make_repo, tmp_path: Path, what: str, code: str
) -> None:
    repo = make_repo({"data/x.csv": "1\n"}, policy=POLICY)
    _spec(tmp_path / "run", {})
    _plant(tmp_path / "run/TASK_SPEC.json", what)
    rc, doc, _ = run("env", "--compare", str(tmp_path / "run"), cwd=repo)
    assert (rc, doc["code"]) == (1, code), doc


@pytest.mark.parametrize(
    "lock",
    [
        pytest.param("/dev/zero", id="absolute-device"),
        pytest.param("/etc/passwd", id="absolute-file", marks=pytest.mark.slow),
        pytest.param("../../../../../../etc/passwd", id="dotdot", marks=pytest.mark.slow),
        pytest.param(".git/config", id="git-dir", marks=pytest.mark.slow),
    ],
)
def test_env_compare_never_hashes_a_path_outside_the_tree(
    make_repo, tmp_path: Path, lock: str
) -> None:
    repo = make_repo({"data/x.csv": "1\n"}, policy=POLICY)
    _spec(tmp_path / "run", {"determinism": {}, "lock_files": {lock: None}})
    rc, doc, _ = run("env", "--compare", str(tmp_path / "run"), cwd=repo)
    assert (rc, doc["code"]) == (1, "ARTIFACT_MALFORMED"), doc
    assert "lock file" in doc["message"]
    assert "sha256:" not in json.dumps(doc)  # no hash of anything the bundle named


@pytest.mark.parametrize("planted", [pytest.param("fifo", marks=pytest.mark.slow), "zero"])
def test_env_compare_never_reads_a_planted_lock_file(
    make_repo, tmp_path: Path, planted: str
) -> None:
    """A lock file the bundle names inside the tree that is a FIFO or a link to a device is
    not there for the fingerprint (null), so the comparison reports a difference."""
    repo = make_repo({"data/x.csv": "1\n", "uv.lock": "x\n"}, policy=POLICY)
    _plant(repo / "uv.lock", planted)
    _spec(tmp_path / "run", {"determinism": {}, "lock_files": {"uv.lock": "sha256:" + "0" * 64}})
    rc, doc, _ = run("env", "--compare", str(tmp_path / "run"), cwd=repo)
    assert (rc, doc["code"]) == (1, "ENV_MISMATCH"), doc
    diff = [d for d in doc["details"]["differences"] if d["field"] == "lock_files"]
    assert diff == [
        {
            "field": "lock_files",
            "recorded": {"uv.lock": "sha256:" + "0" * 64},
            "current": {"uv.lock": None},
        }
    ]


@pytest.mark.parametrize(
    "environment",
    [
        pytest.param(
            {"determinism": {}, "lock_files": "uv.lock"},
            id="lock-files-a-string",
            marks=pytest.mark.slow,
        ),
        pytest.param({"determinism": {}, "lock_files": [1, 2]}, id="lock-files-numbers"),
        pytest.param({"distributions": 5}, id="distributions-a-number", marks=pytest.mark.slow),
    ],
)
def test_env_compare_maps_every_shape_error_to_a_code(
    make_repo, tmp_path: Path, environment: Any
) -> None:
    repo = make_repo({"data/x.csv": "1\n"}, policy=POLICY)
    _spec(tmp_path / "run", environment)
    rc, doc, _ = run("env", "--compare", str(tmp_path / "run"), cwd=repo)
    assert (rc, doc["code"]) == (1, "ARTIFACT_MALFORMED"), doc


# -- files of the repository that holds the bundle, or of a cloned one ------------------------


@pytest.mark.parametrize(
    ("planted", "code"),
    [
        pytest.param(".catalytic/allowed_validators", "UNTRUSTED", id="trust-file"),
        pytest.param(".catalytic/chronicle.jsonl.head", "CHRONICLE_INVALID", id="chronicle-head"),
    ],
)
def test_verify_never_follows_a_repository_file_to_dev_zero(
    attested: Path, planted: str, code: str
) -> None:
    """A clone checks out symbolic links: the trust file or the chronicle head (which `verify`
    appends to) may point at /dev/zero."""
    path = attested / planted
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")
    rc, doc, _ = run("verify", "_runs/r1", cwd=attested)
    assert (rc, doc["code"]) == (1, code), doc


def test_replay_never_hashes_a_lock_file_outside_the_tree(attested: Path) -> None:
    """Signed by the trusted key: trust in the signer is no reason to read /dev/zero."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=attested, capture_output=True, text=True, check=True
    ).stdout.strip()
    spec = {
        "task_id": "r2",
        "command": ["true"],
        "git_commit": head,
        "cwd": ".",
        "environment": {"determinism": {}, "lock_files": {"/dev/zero": None}},
    }
    make_bundle(
        attested / "_runs/r2",
        attested,
        {"outputs/q.txt": b"q\n"},
        task_spec=json.dumps(spec).encode(),
    )
    rc, doc, _ = run("replay", "_runs/r2", cwd=attested)
    assert (rc, doc["code"], doc["details"]["reason"]) == (1, "REPLAY_FAILED", "UNSAFE_PATH"), doc
    assert "/dev/zero" in doc["message"]


@pytest.mark.parametrize("planted", ["zero", pytest.param("fifo", marks=pytest.mark.slow)])
def test_receipt_commands_read_a_bundles_receipts_safely(attested: Path, planted: str) -> None:
    """`purity-scan` and `restore-proof` are often pointed at a bundle's receipts."""
    run_dir = attested / "_runs/r1"
    for name in ("PRE_DIGEST.json", "POST_DIGEST.json"):
        (run_dir / name).write_text("{}")
    _plant(run_dir / "PRE_DIGEST.json", planted)
    rc, doc, _ = run(
        "purity-scan", "_runs/r1/PRE_DIGEST.json", "_runs/r1/POST_DIGEST.json", cwd=attested
    )
    assert (rc, doc["code"]) == (2, "IO_ERROR"), doc


@pytest.mark.parametrize(
    "command",
    [
        ["trust", "add", "bob", "id:" + "b" * 64],
        pytest.param(["trust", "migrate"], marks=pytest.mark.slow),
    ],
)
def test_trust_edits_never_read_a_planted_trust_file(attested: Path, command: list[str]) -> None:
    path = attested / ".catalytic/allowed_validators"
    path.unlink()
    path.symlink_to("/dev/zero")
    rc, doc, _ = run(*command, cwd=attested)
    assert (rc, doc["code"]) == (2, "CONFIG_INVALID"), doc
    assert path.is_symlink() and os.readlink(path) == "/dev/zero"
