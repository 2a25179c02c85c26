"""SPECTRUM-04/05: conformance vectors, interop with an independent implementation, one test
per verification code, hostile inputs, chains and trust."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalytic_hooks.bundle.keys import signer_from_seed
from catalytic_hooks.bundle.model import DirSource, signed_message
from catalytic_hooks.bundle.verify import verify_bundle, verify_chain
from catalytic_hooks.core.errors import CatalyticError

from . import independent
from .helpers import CONFORMANCE, SEED_B, catalytic, key_file, make_bundle, resign, rewrite, signer

VECTOR = CONFORMANCE / "spectrum-single" / "project_root"
VECTOR_RUN = VECTOR / "LAW/CONTRACTS/_runs/run-single-001"
VECTOR_SEED = bytes.fromhex("f3f8c2c72bd1c944b57b4a072ca0b4b8b9e7c5d46bcd44aa029bd869312afa47")


# -- conformance ------------------------------------------------------------------------------


def test_conformance_vector_reproduces() -> None:
    assert hashlib.sha256(b"catalytic_hooks/ags-vector/validator-A").digest() == VECTOR_SEED
    v = verify_bundle(DirSource(VECTOR_RUN, VECTOR))
    assert (
        hashlib.sha256((VECTOR_RUN / "TASK_SPEC.json").read_bytes()).hexdigest()
        == "af5e2753722d30c595e04bdd866aea4bf72cfbde13f11651249921b434b3d850"
    )
    assert v.bundle_root == "281d1c831be59d9ebc45fcf87a4e6afd8361c6015af9cf1097435458f7082f4a"
    assert v.public_key == "3adba5d658aa2a7f3c05ca8d673e4d1447b8178e4f10bcb7223cd96fd8af56fc"
    assert v.validator_id == "58c7900df69984ed9393f77e3a710e6a1252fe3aee2f4cecf737384f09a06788"
    assert v.proof_covered is False  # a foreign bundle without catalytic's STATUS hashes


def test_resigning_vector_with_test_seed_is_identical(tmp_path: Path) -> None:
    s = signer_from_seed(VECTOR_SEED)
    payload = json.loads((VECTOR_RUN / "SIGNED_PAYLOAD.json").read_text())
    expected = json.loads((VECTOR_RUN / "SIGNATURE.json").read_text())["signature"]
    assert s.sign(signed_message(payload)) == expected
    copy = tmp_path / "project_root"
    shutil.copytree(VECTOR, copy)
    run = copy / "LAW/CONTRACTS/_runs/run-single-001"
    bad = catalytic("sign", str(run), "--key", "/dev/null", "--json", cwd=tmp_path)
    assert bad.returncode == 2 and json.loads(bad.stdout)["code"] == "SIGNING_KEY_INVALID"
    key = tmp_path / "vector.pem"
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    key.write_bytes(s.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    again = catalytic("sign", str(run), "--key", str(key), "--json", cwd=tmp_path)
    assert again.returncode == 2 and json.loads(again.stdout)["code"] == "ALREADY_SIGNED"
    assert catalytic("sign", str(run), "--key", str(key), "--force", cwd=tmp_path).returncode == 0
    assert json.loads((run / "SIGNATURE.json").read_text())["signature"] == expected


def test_conformance_vector_via_cli(tmp_path: Path) -> None:
    proc = catalytic(
        "verify", str(VECTOR_RUN), "--project-root", str(VECTOR), "--json", cwd=tmp_path
    )
    assert proc.returncode == 1  # valid but not trusted here
    row = json.loads(proc.stdout)["details"]["results"][0]
    assert row["valid"] is True and row["trusted"] is False and row["code"] == "UNTRUSTED"
    ok = catalytic(
        "verify",
        str(VECTOR_RUN),
        "--project-root",
        str(VECTOR),
        "--json",
        "--allow-untrusted",
        cwd=tmp_path,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True


# -- interop with the independent implementation ----------------------------------------------

RUN_POLICY = 'durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\nrun_roots = ["_runs"]\n'


def test_run_sign_bundle_accepted_by_independent_checker(make_repo, tmp_path: Path) -> None:
    repo = make_repo({"in.txt": "data"}, policy=RUN_POLICY)
    proc = catalytic(
        "run",
        "--run-id",
        "r1",
        "--sign",
        str(key_file(tmp_path)),
        "--",
        "sh",
        "-c",
        "mkdir -p outputs && echo résumé > outputs/o.txt",
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = independent.check(repo / "_runs/r1", repo)
    assert root == verify_bundle(DirSource(repo / "_runs/r1", repo)).bundle_root


def test_independent_bundle_accepted_by_package(tmp_path: Path) -> None:
    run = tmp_path / "proj" / "runs" / "ext-1"
    root = independent.produce(
        run, tmp_path / "proj", {"a/b.bin": b"\x00\x01", "c.txt": b"c"}, SEED_B
    )
    assert verify_bundle(DirSource(run, tmp_path / "proj")).bundle_root == root
    proc = catalytic(
        "verify",
        str(run),
        "--project-root",
        str(tmp_path / "proj"),
        "--allow-untrusted",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0


# -- one test per verification code -----------------------------------------------------------

Mut = Callable[[Path, Path], None]


def _del(name: str) -> Mut:
    return lambda run, root: (run / name).unlink()


def _set(name: str, fn: Callable[[dict], None], sign_again: bool = False) -> Mut:
    def mut(run: Path, root: Path) -> None:
        rewrite(run / name, fn)
        if sign_again:
            resign(run)

    return mut


def _extra_identity(run: Path, root: Path) -> None:
    shutil.copy(run / "VALIDATOR_IDENTITY.json", run / "VALIDATOR_IDENTITY.2.json")


def _dir_artifact(run: Path, root: Path) -> None:
    (run / "PROOF.json").unlink()
    (run / "PROOF.json").mkdir()


def _dup_keys(run: Path, root: Path) -> None:
    (run / "STATUS.json").write_text('{"status":"success","status":"success","cmp01":"pass"}')


def _non_object(run: Path, root: Path) -> None:
    (run / "OUTPUT_HASHES.json").write_text('["hashes"]')


def _nan(run: Path, root: Path) -> None:
    (run / "PROOF.json").write_text('{"restoration_result":{"verified":true},"x":NaN}')


def _bad_sig_bytes(run: Path, root: Path) -> None:
    def fn(d: dict) -> None:
        d["signature"] = d["signature"][:-2] + ("00" if d["signature"][-2:] != "00" else "11")

    rewrite(run / "SIGNATURE.json", fn)


def _swap_identity(run: Path, root: Path) -> None:
    other = signer(SEED_B)
    rewrite(
        run / "VALIDATOR_IDENTITY.json",
        lambda d: d.update(public_key=other.public_hex, validator_id=other.validator_id),
    )


def _forbidden(run: Path, root: Path) -> None:
    (run / "tmp").mkdir()


def _escape_key(key: str) -> Mut:
    def mut(run: Path, root: Path) -> None:
        rewrite(
            run / "OUTPUT_HASHES.json", lambda d: d["hashes"].update({key: "sha256:" + "0" * 64})
        )
        resign(run)

    return mut


def _missing_output(run: Path, root: Path) -> None:
    (root / "out/result.txt").unlink()


def _symlinked_output(run: Path, root: Path) -> None:
    target = root.parent / "outside.txt"
    target.write_bytes(b"hello\n")
    (root / "out/result.txt").unlink()
    os.symlink(target, root / "out/result.txt")


def _symlinked_output_dir(run: Path, root: Path) -> None:
    outside = root.parent / "outside-dir"
    outside.mkdir()
    (outside / "result.txt").write_bytes(b"hello\n")
    shutil.rmtree(root / "out")
    os.symlink(outside, root / "out")


def _tamper_output(run: Path, root: Path) -> None:
    (root / "out/result.txt").write_bytes(b"hellO\n")


CODES: dict[str, tuple[Mut, str]] = {
    "missing-task-spec": (_del("TASK_SPEC.json"), "ARTIFACT_MISSING"),
    "missing-signature": (_del("SIGNATURE.json"), "ARTIFACT_MISSING"),
    "extra-identity": (_extra_identity, "ARTIFACT_EXTRA"),
    "directory-artifact": (_dir_artifact, "ARTIFACT_MALFORMED"),
    "duplicate-keys": (_dup_keys, "ARTIFACT_MALFORMED"),
    "non-object": (_non_object, "ARTIFACT_MALFORMED"),
    "nan": (_nan, "ARTIFACT_MALFORMED"),
    "identity-extra-field": (
        _set("VALIDATOR_IDENTITY.json", lambda d: d.update(x=1)),
        "FIELD_EXTRA",
    ),
    "identity-missing-field": (
        _set("VALIDATOR_IDENTITY.json", lambda d: d.pop("algorithm")),
        "FIELD_MISSING",
    ),
    "algorithm": (
        _set("VALIDATOR_IDENTITY.json", lambda d: d.update(algorithm="rsa")),
        "ALGORITHM_UNSUPPORTED",
    ),
    "key-uppercase-hex": (
        _set("VALIDATOR_IDENTITY.json", lambda d: d.update(public_key=d["public_key"].upper())),
        "KEY_INVALID",
    ),
    "key-short": (
        _set("VALIDATOR_IDENTITY.json", lambda d: d.update(public_key="ab")),
        "KEY_INVALID",
    ),
    "identity-derivation": (
        _set("VALIDATOR_IDENTITY.json", lambda d: d.update(validator_id="0" * 64)),
        "IDENTITY_INVALID",
    ),
    "hashes-missing": (_set("OUTPUT_HASHES.json", lambda d: d.pop("hashes")), "FIELD_MISSING"),
    "hashes-not-strings": (
        _set("OUTPUT_HASHES.json", lambda d: d.update(hashes={"a": 1})),
        "ARTIFACT_MALFORMED",
    ),
    "hash-uppercase": (
        _set(
            "OUTPUT_HASHES.json",
            lambda d: d["hashes"].update(
                {k: v.upper().replace("SHA256:", "sha256:") for k, v in d["hashes"].items()}
            ),
        ),
        "ARTIFACT_MALFORMED",
    ),
    "payload-extra": (_set("SIGNED_PAYLOAD.json", lambda d: d.update(extra=True)), "FIELD_EXTRA"),
    "payload-missing": (_set("SIGNED_PAYLOAD.json", lambda d: d.pop("decision")), "FIELD_MISSING"),
    "status-changed": (_set("STATUS.json", lambda d: d.update(note="x")), "BUNDLE_ROOT_MISMATCH"),
    "decision": (
        _set("SIGNED_PAYLOAD.json", lambda d: d.update(decision="REJECT")),
        "DECISION_INVALID",
    ),
    "payload-identity": (
        _set("SIGNED_PAYLOAD.json", lambda d: d.update(validator_id="1" * 64)),
        "IDENTITY_MISMATCH",
    ),
    "signature-incomplete": (
        _set("SIGNATURE.json", lambda d: d.pop("signature")),
        "SIGNATURE_INCOMPLETE",
    ),
    "signature-type": (
        _set("SIGNATURE.json", lambda d: d.update(payload_type="OTHER")),
        "SIGNATURE_MALFORMED",
    ),
    "signature-uppercase": (
        _set("SIGNATURE.json", lambda d: d.update(signature=d["signature"].upper())),
        "SIGNATURE_MALFORMED",
    ),
    "signature-identity": (
        _set("SIGNATURE.json", lambda d: d.update(validator_id="2" * 64)),
        "IDENTITY_MISMATCH",
    ),
    "signature-invalid": (_bad_sig_bytes, "SIGNATURE_INVALID"),
    "self-declared-other-key": (_swap_identity, "IDENTITY_MISMATCH"),
    "proof-hash-wrong": (
        _set("PROOF.json", lambda d: d.update(proof_hash="0" * 64)),
        "ARTIFACT_MALFORMED",
    ),
    "proof-missing-result": (
        _set("PROOF.json", lambda d: d.pop("restoration_result")),
        "FIELD_MISSING",
    ),
    "proof-not-verified": (
        _set("PROOF.json", lambda d: d.update(restoration_result={"verified": "true"})),
        "RESTORATION_FAILED",
    ),
    "forbidden-tmp": (_forbidden, "FORBIDDEN_ARTIFACT"),
    "status-not-success": (
        _set("STATUS.json", lambda d: d.update(status="failure"), True),
        "DECISION_INVALID",
    ),
    "cmp01-fail": (_set("STATUS.json", lambda d: d.update(cmp01="fail"), True), "DECISION_INVALID"),
    "absolute-key": (_escape_key("/etc/passwd"), "PATH_ESCAPE_DETECTED"),
    "dotdot-key": (_escape_key("../outside.txt"), "PATH_ESCAPE_DETECTED"),
    "backslash-key": (_escape_key("a\\b"), "PATH_ESCAPE_DETECTED"),
    "output-missing": (_missing_output, "OUTPUT_MISSING"),
    "symlinked-output": (_symlinked_output, "OUTPUT_MISSING"),
    "symlinked-output-dir": (_symlinked_output_dir, "OUTPUT_MISSING"),
    "hash-mismatch": (_tamper_output, "HASH_MISMATCH"),
}


@pytest.mark.parametrize("case", list(CODES), ids=list(CODES))
def test_verification_code(tmp_path: Path, case: str) -> None:
    mutate, code = CODES[case]
    root = tmp_path / "proj"
    run = make_bundle(root / "_runs" / "r1", root)
    verify_bundle(DirSource(run, root))  # valid before the mutation
    mutate(run, root)
    with pytest.raises(CatalyticError) as err:
        verify_bundle(DirSource(run, root))
    assert err.value.code.value == code, err.value
    proc = catalytic("verify", str(run), "--project-root", str(root), "--json", cwd=tmp_path)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["code"] == code and doc["ok"] is False
    assert "Traceback" not in proc.stderr


def test_hash_mismatch_details(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    run = make_bundle(root / "_runs" / "r1", root)
    _tamper_output(run, root)
    with pytest.raises(CatalyticError) as err:
        verify_bundle(DirSource(run, root))
    d = err.value.details
    assert d["path"] == "out/result.txt"
    assert d["expected"] == "sha256:" + hashlib.sha256(b"hello\n").hexdigest()
    assert d["actual"] == "sha256:" + hashlib.sha256(b"hellO\n").hexdigest()


def test_content_store_consulted_first(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    run = make_bundle(root / "_runs" / "r1", root)
    data = b"hello\n"
    hexd = hashlib.sha256(data).hexdigest()
    store = run / "objects" / "sha256" / hexd[:2] / hexd[2:]
    store.parent.mkdir(parents=True)
    store.write_bytes(data)
    before = verify_bundle(DirSource(run, root))
    (root / "out/result.txt").unlink()
    src = DirSource(run, root)
    after = verify_bundle(src)
    assert after.bundle_root == before.bundle_root
    assert after.hashes == {"out/result.txt": "sha256:" + hexd}
    assert src.locate("out/result.txt") == (run, f"objects/sha256/{hexd[:2]}/{hexd[2:]}")


def test_hostile_huge_and_deep_json(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    run = make_bundle(root / "_runs" / "r1", root)
    (run / "TASK_SPEC.json").write_bytes(b"[" * 50000 + b"]" * 50000)
    with pytest.raises(CatalyticError) as err:
        verify_bundle(DirSource(run, root))
    assert err.value.code.value == "ARTIFACT_MALFORMED"
    proc = catalytic("verify", str(tmp_path / "does-not-exist"), "--json", cwd=tmp_path)
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == "ARTIFACT_MISSING"


# -- chains -----------------------------------------------------------------------------------


def test_chain_root_and_chain_codes(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    a = make_bundle(root / "_runs" / "a", root, {"out/a.txt": b"a"})
    b = make_bundle(root / "_runs" / "b", root, {"out/b.txt": b"b"})
    cv = verify_chain([DirSource(a, root), DirSource(b, root)])
    roots = [v.bundle_root for v in cv.bundles]
    expected = hashlib.sha256(
        json.dumps(
            {"bundle_roots": roots, "run_ids": ["a", "b"]}, sort_keys=True, separators=(",", ":")
        ).encode()
    ).hexdigest()
    assert cv.chain_root == expected
    with pytest.raises(CatalyticError) as err:
        verify_chain([])
    assert err.value.code.value == "CHAIN_EMPTY"
    with pytest.raises(CatalyticError) as err:
        verify_chain([DirSource(a, root), DirSource(a, root)])
    assert err.value.code.value == "CHAIN_DUPLICATE_RUN"
    (root / "out/b.txt").write_bytes(b"B")
    with pytest.raises(CatalyticError) as err:
        verify_chain([DirSource(a, root), DirSource(b, root)])
    assert err.value.code.value == "HASH_MISMATCH" and err.value.details["run_id"] == "b"
    proc = catalytic(
        "verify", "--chain", str(a), str(a), "--project-root", str(root), "--json", cwd=tmp_path
    )
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == "CHAIN_DUPLICATE_RUN"


def test_cli_empty_chain_is_usage_error(tmp_path: Path) -> None:
    proc = catalytic("verify", "--chain", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


# -- fuzz: hostile content never crashes the verifier -----------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ARTIFACT_NAMES = [
    "TASK_SPEC.json",
    "STATUS.json",
    "OUTPUT_HASHES.json",
    "PROOF.json",
    "VALIDATOR_IDENTITY.json",
    "SIGNED_PAYLOAD.json",
    "SIGNATURE.json",
]


@pytest.fixture(scope="module")
def fuzz_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "proj"
    make_bundle(root / "_runs" / "r1", root)
    return root


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(ARTIFACT_NAMES),
    value=JSON,
    raw=st.binary(max_size=64),
    use_raw=st.booleans(),
    field=st.sampled_from(
        ["", "hashes", "signature", "public_key", "restoration_result", "status"]
    ),
)
def test_hostile_artifacts_never_crash(
    fuzz_bundle: Path, name: str, value: object, raw: bytes, use_raw: bool, field: str
) -> None:
    run = fuzz_bundle / "_runs" / "r1"
    path = run / name
    original = path.read_bytes()
    try:
        if use_raw:
            path.write_bytes(raw)
        elif field:
            doc = json.loads(original)
            doc[field] = value
            path.write_text(json.dumps(doc))
        else:
            path.write_text(json.dumps(value))
        # A coded rejection is the only acceptable failure; anything else propagates.
        with contextlib.suppress(CatalyticError):
            verify_bundle(DirSource(run, fuzz_bundle))
    finally:
        path.write_bytes(original)


def test_outputs_in_more_directories_than_the_fd_cache_holds_verify_on_threads(
    tmp_path: Path,
) -> None:
    """Large outputs are hashed on threads, and past 256 directories a directory lookup closes
    the cached fds: a lookup and the open that uses its fd must be one step, or another
    thread's open fails with EBADF (before the fix: OUTPUT_MISSING "Bad file descriptor" on
    every run of this test) or lands on a reused fd number."""
    outputs = {f"out/d{i:03d}/f.bin": bytes([i % 256]) * (70 * 1024 + i) for i in range(300)}
    run = make_bundle(tmp_path / "_runs" / "wide", tmp_path, outputs)
    for _ in range(5):
        v = verify_bundle(DirSource(run, tmp_path))
        assert v.hashes == {
            k: "sha256:" + hashlib.sha256(d).hexdigest() for k, d in outputs.items()
        }


def test_a_signed_run_renamed_is_refused_alone_and_in_a_chain(tmp_path: Path) -> None:
    """A run recording its run id (STATUS.json, under the signature) verified under any
    directory name: as another run, twice in one chain (the same bundle root under two ids),
    and through the gate. Archives already refused this; run directories now do too."""
    from catalytic_hooks.bundle.model import DirSource
    from catalytic_hooks.bundle.verify import verify_bundle, verify_chain
    from catalytic_hooks.core.errors import CatalyticError

    root = tmp_path / "proj"
    status = {"status": "success", "cmp01": "pass", "run_id": "draft-7"}
    a = make_bundle(root / "_runs/draft-7", root, status=status)
    b = root / "_runs/release-1"
    shutil.copytree(a, b)
    assert verify_bundle(DirSource(a, root)).run_id == "draft-7"
    with pytest.raises(CatalyticError) as alone:
        verify_bundle(DirSource(b, root))
    assert alone.value.code.value == "RUN_ID_MISMATCH"
    with pytest.raises(CatalyticError) as chained:
        verify_chain([DirSource(a, root), DirSource(b, root)])
    assert chained.value.code.value == "RUN_ID_MISMATCH"
