"""in-toto attestations: the envelope `catalytic attest` writes verifies with securesystemslib's
DSSE implementation (a real, independent library), an envelope signed by that library for our
statement verifies with `catalytic verify --attestation`, and any changed byte is caught."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalytic_hooks.bundle.keys import signer_from_seed

from .helpers import SEED_A, SEED_B, catalytic, extra_module, inproc, key_file

dsse = extra_module("securesystemslib.dsse")
sslib_signer = extra_module("securesystemslib.signer")

POLICY = 'durable_roots = ["outputs"]\n'


@pytest.fixture
def attested(make_repo, tmp_path: Path) -> Path:
    repo = make_repo({"data/x.csv": "1\n"}, policy=POLICY)
    (repo / ".catalytic").mkdir()
    (repo / ".catalytic/allowed_validators").write_text(
        f"alice id:{signer_from_seed(SEED_A).validator_id}\n"
    )
    run = catalytic(
        "run",
        "--run-id",
        "r1",
        "--sign",
        str(key_file(tmp_path)),
        "--",
        "sh",
        "-c",
        "mkdir -p outputs && echo r > outputs/r.txt && echo s > outputs/s.txt",
        cwd=repo,
    )
    assert run.returncode == 0, run.stderr
    proc = catalytic("attest", "_runs/r1", "--sign", str(key_file(tmp_path)), cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return repo


def _sslib_key() -> object:
    s = signer_from_seed(SEED_A)
    return sslib_signer.SSlibKey(s.validator_id, "ed25519", "ed25519", {"public": s.public_hex})


def test_securesystemslib_verifies_our_envelope(attested: Path) -> None:
    doc = json.loads((attested / "_runs/r1/attestation.intoto.json").read_text())
    env = dsse.Envelope.from_dict(doc)
    assert env.payload_type == "application/vnd.in-toto+json"
    verified = env.verify([_sslib_key()], 1)
    assert list(verified) == [signer_from_seed(SEED_A).validator_id]
    stmt = json.loads(env.pae().split(b" ", 4)[4])
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    names = {s["name"]: s["digest"] for s in stmt["subject"]}
    assert set(names) == {"outputs/r.txt", "outputs/s.txt", "source"}
    import hashlib

    assert names["outputs/r.txt"]["sha256"] == hashlib.sha256(b"r\n").hexdigest()
    assert stmt["predicate"]["purity_verdict"] == "PASS"
    ok = catalytic(
        "verify",
        "_runs/r1",
        "--attestation",
        "_runs/r1/attestation.intoto.json",
        "--json",
        cwd=attested,
    )
    assert ok.returncode == 0, ok.stdout


def test_an_envelope_signed_by_securesystemslib_verifies_with_catalytic(attested: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from .helpers import SEED_A as seed

    ours = json.loads((attested / "_runs/r1/attestation.intoto.json").read_text())
    payload = base64.b64decode(ours["payload"])
    key = Ed25519PrivateKey.from_private_bytes(seed)
    signer = sslib_signer.CryptoSigner(key, _sslib_key())
    env = dsse.Envelope(payload, "application/vnd.in-toto+json", {})
    env.sign(signer)
    path = attested / "theirs.json"
    path.write_text(json.dumps(env.to_dict()))
    proc = catalytic("verify", "_runs/r1", "--attestation", str(path), "--json", cwd=attested)
    assert proc.returncode == 0, proc.stdout


def test_an_attestation_by_an_untrusted_or_other_key_is_refused(
    attested: Path, tmp_path: Path
) -> None:
    (attested / ".catalytic/allowed_validators").write_text("")
    proc = catalytic(
        "verify",
        "_runs/r1",
        "--attestation",
        "_runs/r1/attestation.intoto.json",
        "--json",
        cwd=attested,
    )
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == "UNTRUSTED"
    other = catalytic(
        "attest",
        "_runs/r1",
        "--sign",
        str(key_file(tmp_path, SEED_B)),
        "--output",
        str(tmp_path / "b.json"),
        "--json",
        cwd=attested,
    )
    assert other.returncode == 2 and json.loads(other.stdout)["code"] == "USAGE"


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(part=st.sampled_from(["payload", "sig", "subject"]), pos=st.floats(0, 1))
def test_any_changed_byte_is_caught(attested: Path, part: str, pos: float) -> None:
    doc = json.loads((attested / "_runs/r1/attestation.intoto.json").read_text())
    if part == "subject":
        stmt = json.loads(base64.b64decode(doc["payload"]))
        digest = stmt["subject"][0]["digest"]["sha256"]
        i = int(pos * (len(digest) - 1))
        stmt["subject"][0]["digest"]["sha256"] = (
            digest[:i] + ("0" if digest[i] != "0" else "1") + digest[i + 1 :]
        )
        doc["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    else:
        field = doc["payload"] if part == "payload" else doc["signatures"][0]["sig"]
        raw = bytearray(base64.b64decode(field))
        raw[int(pos * (len(raw) - 1))] ^= 0x01
        value = base64.b64encode(bytes(raw)).decode()
        if part == "payload":
            doc["payload"] = value
        else:
            doc["signatures"][0]["sig"] = value
    path = attested / "tampered.json"
    path.write_text(json.dumps(doc))
    # In process (the same Typer app and exit mapping as the console script): twelve examples
    # of an interpreter start each were a tenth of the default run's budget.
    proc = inproc("verify", "_runs/r1", "--attestation", str(path), "--json", cwd=attested)
    assert proc.returncode in (1, 2), proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["ok"] is False


def test_the_in_toto_package_reads_and_verifies_the_envelope(attested: Path) -> None:
    metadata = extra_module("in_toto.models.metadata")
    doc = json.loads((attested / "_runs/r1/attestation.intoto.json").read_text())
    env = metadata.Envelope.from_dict(doc)
    assert env.payload_type == metadata.ENVELOPE_PAYLOAD_TYPE
    s = signer_from_seed(SEED_A)
    key = {
        "keyid": s.validator_id,
        "keytype": "ed25519",
        "scheme": "ed25519",
        "keyval": {"public": s.public_hex},
    }
    env.verify_signature(key)  # raises SignatureVerificationError on a bad signature
    other = signer_from_seed(SEED_B)
    with pytest.raises(metadata.SignatureVerificationError):
        env.verify_signature(
            {**key, "keyid": s.validator_id, "keyval": {"public": other.public_hex}}
        )
    assert json.loads(env.payload)["predicateType"] == "https://github.com/catalytic-hooks/run/v1"


def test_run_attest_and_a_chain_of_attestations(attested: Path, tmp_path: Path) -> None:
    run = catalytic(
        "run",
        "--run-id",
        "r2",
        "--sign",
        str(key_file(tmp_path)),
        "--attest",
        "--json",
        "--",
        "sh",
        "-c",
        "echo q > outputs/q.txt",
        cwd=attested,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert Path(json.loads(run.stdout)["details"]["attestation"]).is_file()
    chain = tmp_path / "chain.intoto.jsonl"
    proc = catalytic(
        "attest",
        "_runs/r1",
        "_runs/r2",
        "--sign",
        str(key_file(tmp_path)),
        "--output",
        str(chain),
        cwd=attested,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(chain.read_text().splitlines()) == 2
    ok = catalytic(
        "verify", "_runs/r1", "_runs/r2", "--attestation", str(chain), "--json", cwd=attested
    )
    assert ok.returncode == 0, ok.stdout
    swapped = catalytic(
        "verify", "_runs/r2", "_runs/r1", "--attestation", str(chain), "--json", cwd=attested
    )
    assert swapped.returncode == 1  # each envelope is bound to its own run


def test_chain_and_attestation_in_one_call_is_a_usage_error(make_repo, tmp_path: Path) -> None:
    """`--attestation` answered for each run on its own and ended the command, so with
    `--chain` a chain that repeats a link (CHAIN_DUPLICATE_RUN without it) passed, exit 0."""
    repo = make_repo({"data/x.csv": "1\n"}, policy='durable_roots = ["outputs"]\n')
    trust = tmp_path / "trust"
    trust.write_text(f"alice id:{signer_from_seed(SEED_A).validator_id}\n")
    key = str(key_file(tmp_path))
    script = "mkdir -p outputs && echo r > outputs/r.txt"
    made = catalytic("run", "--run-id", "r1", "--sign", key, "--", "sh", "-c", script, cwd=repo)
    assert made.returncode == 0, made.stdout + made.stderr
    assert catalytic("attest", "_runs/r1", "--sign", key, cwd=repo).returncode == 0
    env = (repo / "_runs/r1/attestation.intoto.json").read_text().strip()
    (tmp_path / "two.jsonl").write_text(env + "\n" + env + "\n")
    args = ["verify", "--chain", "_runs/r1", "_runs/r1", "--trust-file", str(trust), "--json"]
    plain = catalytic(*args, cwd=repo)
    assert json.loads(plain.stdout)["code"] == "CHAIN_DUPLICATE_RUN"
    both = catalytic(*args, "--attestation", str(tmp_path / "two.jsonl"), cwd=repo)
    assert (both.returncode, json.loads(both.stdout)["code"]) == (2, "USAGE"), both.stdout
