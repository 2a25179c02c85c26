"""Portable run archives (issue 28): a run leaves its repository as one file that verifies,
restores and replays in an empty directory with only a trust file; two archives of one run are
the same bytes; the bag and the crate pass their own communities' validators."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalytic_hooks.provenance.chronicle import read

from .helpers import (
    catalytic,
    extra_module,
    git,
    inproc,
    needs_tool,
    on_another_file_system,
    write_files,
)

POLICY = """\
durable_roots = ["outputs"]
tmp_roots = ["_tmp"]
run_roots = ["_runs"]
trusted_validators = ".catalytic/allowed_validators"
"""

JOB = """\
import json, os, random, pathlib
random.seed(int(os.environ["CATALYTIC_SEED"]))
xs = [random.random() for _ in range(1000)]
out = pathlib.Path("outputs"); out.mkdir(exist_ok=True)
(out / "sample.txt").write_text("\\n".join(f"{x:.17g}" for x in xs[:10]))
(out / "metrics.json").write_text(json.dumps({"mean": sum(xs) / len(xs)}))
(out / "same.txt").write_text("twice")
(out / "again.txt").write_text("twice")
"""


def _env(home: Path, **extra: str) -> dict[str, str]:
    """A private environment for a module-scoped fixture (the autouse isolation is per test)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
        GIT_AUTHOR_NAME="Test",
        GIT_COMMITTER_NAME="Test",
        GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_EMAIL="t@example.invalid",
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    )
    env.update(extra)
    return env


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A repository with a signed run of a deterministic job, and its archive."""
    base = tmp_path_factory.mktemp("archive")
    home = base / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    env = _env(home)
    repo = base / "repo"
    repo.mkdir()
    git(repo, "init", "-q", env=env)
    write_files(
        repo,
        {
            ".catalytic.toml": POLICY,
            "job.py": JOB,
            ".gitignore": "_tmp/\n",
            "data/input.csv": "a,b\n1,2\n",
        },
    )
    key = base / "key"
    assert inproc("keygen", "--out", str(key), cwd=repo).returncode == 0
    assert inproc("trust", "add", "ci", f"{key}.pub", cwd=repo).returncode == 0
    git(repo, "add", "-A", env=env)
    git(repo, "commit", "-qm", "job", env=env)
    proc = catalytic(
        "run",
        "--run-id",
        "r1",
        "--sign",
        str(key),
        "--seed",
        "7",
        "--metrics",
        "outputs/metrics.json",
        "--",
        sys.executable,
        "job.py",
        cwd=repo,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    git(repo, "add", "-A", env=env)
    git(repo, "commit", "-qm", "run r1", env=env)
    proc = inproc("archive", "create", "_runs/r1", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    archive = Path(json.loads(proc.stdout)["details"]["archive"])
    assert archive == repo / ".catalytic/archives/r1.catalytic.zip"
    assert archive.stat().st_mode & 0o777 == 0o666 & ~_umask()
    return {
        "repo": repo,
        "archive": archive,
        "trust": repo / ".catalytic/allowed_validators",
        "key": key,
        "home": home,
    }


@pytest.fixture
def empty(made: dict[str, Path], tmp_path: Path) -> Path:
    """An empty directory outside any repository holding only the archive and a trust file."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    shutil.copyfile(made["archive"], d / "r1.catalytic.zip")
    shutil.copyfile(made["trust"], d / "allowed_signers")
    return d


def _json(proc: object) -> dict:
    return json.loads(proc.stdout)  # type: ignore[attr-defined]


def _replay_refused(archive: str, cwd: Path, reason: str) -> dict:
    """`replay ARCHIVE` with the trust file beside it: exit 1, ARCHIVE_INVALID for `reason`;
    the JSON document."""
    p = inproc("replay", archive, "--trust-file", "allowed_signers", "--json", cwd=cwd)
    doc = _json(p)
    assert (p.returncode, doc["code"], doc["details"]["reason"]) == (
        1,
        "ARCHIVE_INVALID",
        reason,
    ), p.stdout + p.stderr
    return doc


def test_with_only_the_archive_and_a_trust_file_everything_works(
    made: dict[str, Path], empty: Path
) -> None:
    assert git(empty, "rev-parse", "--git-dir", check=False).returncode != 0
    v = catalytic(
        "verify", "r1.catalytic.zip", "--trust-file", "allowed_signers", "--json", cwd=empty
    )
    assert v.returncode == 0, v.stdout + v.stderr
    row = _json(v)["details"]["results"][0]
    assert row["valid"] and row["trusted"] and row["run_id"] == "r1"
    commit = git(made["repo"], "rev-parse", "HEAD~1").stdout.strip()
    assert row["commit"] == commit
    assert (
        row["source_archive"]["sha256"]
        == hashlib.sha256((empty / "r1.catalytic.zip").read_bytes()).hexdigest()
    )

    (empty / "out").mkdir()
    r = inproc(
        "restore",
        "bundle",
        "r1.catalytic.zip",
        "--restore-root",
        str(empty / "out"),
        "--trust-file",
        "allowed_signers",
        "--json",
        cwd=empty,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("sample.txt", "metrics.json", "same.txt", "again.txt"):
        assert (empty / "out/outputs" / name).read_bytes() == (
            made["repo"] / "outputs" / name
        ).read_bytes()

    w = inproc(
        "restore",
        "bundle",
        "r1.catalytic.zip",
        "--worktree",
        "wt",
        "--trust-file",
        "allowed_signers",
        "--json",
        cwd=empty,
    )
    assert w.returncode == 0, w.stdout + w.stderr
    assert git(empty / "wt", "rev-parse", "HEAD").stdout.strip() == commit
    assert (empty / "wt/data/input.csv").read_text() == "a,b\n1,2\n"
    assert (empty / "wt/outputs/sample.txt").read_bytes() == (
        made["repo"] / "outputs/sample.txt"
    ).read_bytes()

    p = inproc("replay", "r1.catalytic.zip", "--trust-file", "allowed_signers", "--json", cwd=empty)
    assert p.returncode == 0, p.stdout + p.stderr
    rep = _json(p)["details"]
    assert rep["verdict"] == "exact" and rep["verified"] is True
    assert rep["source_archive"] == {
        "name": "r1.catalytic.zip",
        "sha256": row["source_archive"]["sha256"],
    }
    for k in ("restoration_id", "restored_at", "environment_hash"):
        assert rep[k], k
    assert rep["metric_drift"] == 0
    replay_dir = Path(rep["replay_dir"])
    assert replay_dir.parent == empty / "replays" and replay_dir.name.startswith("r1-")
    assert not replay_dir.exists()  # removed without --keep
    assert json.loads(Path(rep["report_json"]).read_text())["verdict"] == "exact"
    assert sorted(p.name for p in empty.iterdir()) == [
        "allowed_signers",
        "out",
        "r1.catalytic.zip",
        "replays",
        "wt",
    ]


def test_a_run_id_as_long_as_a_file_name_allows_replays(
    made: dict[str, Path], tmp_path: Path
) -> None:
    """A run id may be one path component of 255 bytes; replay names its directory and reports
    after the run (`<id>-<time>`, `replay-<id>-<time>.html`), which then cannot be created.
    Those names now shorten a long id (a prefix and a hash); the run keeps its id."""
    env = _env(made["home"])
    repo = tmp_path / "repo"
    shutil.copytree(made["repo"], repo, symlinks=True)
    run_id = "r" * 250  # the archive's default name and every staging name shorten it too
    proc = catalytic(
        "run", "--run-id", run_id, "--sign", str(made["key"]), "--seed", "7", "--",
        sys.executable, "job.py", cwd=repo, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    git(repo, "add", "-A", env=env)
    git(repo, "commit", "-qm", "long", env=env)
    made_archive = inproc("archive", "create", f"_runs/{run_id}", "--json", cwd=repo)
    archive = Path(_json(made_archive)["details"]["archive"])
    p = inproc("replay", str(archive), "--json", cwd=repo)
    assert p.returncode == 0, p.stdout + p.stderr
    rep = _json(p)["details"]
    assert (rep["verdict"], rep["run_id"]) == ("exact", run_id)
    for key in ("replay_dir", "report_html"):
        name = Path(rep[key]).name
        assert len(name.encode()) < 255 and name.count("r") >= 140, name
    assert Path(rep["report_html"]).is_file()
    a = inproc("attest", str(archive), "--sign", str(made["key"]), "--json", cwd=repo)
    assert a.returncode == 0, a.stdout + a.stderr
    att = Path(_json(a)["details"]["attestation"])
    assert att.parent == archive.parent and len(att.name.encode()) < 200


def test_trust_comes_from_the_caller_never_the_archive(empty: Path) -> None:
    v = inproc("verify", "r1.catalytic.zip", "--json", cwd=empty)
    assert v.returncode == 1 and _json(v)["code"] == "UNTRUSTED"
    (empty / "out").mkdir()
    r = inproc(
        "restore",
        "bundle",
        "r1.catalytic.zip",
        "--restore-root",
        str(empty / "out"),
        "--json",
        cwd=empty,
    )
    assert r.returncode == 1 and _json(r)["details"]["reason"] == "UNTRUSTED"
    assert list((empty / "out").iterdir()) == []


def test_replay_inside_a_repository_records_the_seed_fields(made: dict[str, Path]) -> None:
    repo = made["repo"]
    p = inproc("replay", str(made["archive"]), "--keep", "--json", cwd=repo)
    assert p.returncode == 0, p.stdout + p.stderr
    rep = _json(p)["details"]
    kept = Path(rep["replay_dir"])
    assert kept.parent == repo / "replays" and (kept / "archive/r1/bagit.txt").is_file()
    assert Path(rep["report_json"]).parent == repo / ".catalytic/reports"
    last = read(repo / ".catalytic/chronicle.jsonl")[-1]
    assert last["kind"] == "replay"
    for k in (
        "source_archive",
        "restoration_id",
        "restored_at",
        "environment_hash",
        "metric_drift",
        "verified",
    ):
        assert k in last["data"], k
    assert last["data"]["source_archive"]["name"] == "r1.catalytic.zip"
    again = inproc("replay", str(made["archive"]), "--replay-dir", str(kept), "--json", cwd=repo)
    assert again.returncode == 2 and "exists" in _json(again)["message"]
    shutil.rmtree(kept)


def test_verify_and_restore_of_an_archive_are_recorded_in_the_callers_chronicle(
    made: dict[str, Path], tmp_path: Path
) -> None:
    """Inside a repository, `verify FILE` and `restore bundle FILE` are recorded in its
    chronicle as a run directory's are, with the archive's name and SHA-256; a refused archive's
    verification too; a dry run records nothing."""
    repo, archive = made["repo"], made["archive"]
    chronicle = repo / ".catalytic/chronicle.jsonl"
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    source = {"name": "r1.catalytic.zip", "sha256": digest}

    v = inproc("verify", str(archive), "--json", cwd=repo)
    assert v.returncode == 0, v.stdout + v.stderr
    last = read(chronicle)[-1]
    assert last["kind"] == "verify"
    assert last["data"] == {"run_ids": ["r1"], "ok": True, "code": "PASS", "source_archive": source}
    bundle_root = _json(v)["details"]["results"][0]["bundle_root"]

    target = tmp_path / "out"
    target.mkdir()
    n = len(read(chronicle))
    dry = inproc(
        "restore", "bundle", str(archive), "--restore-root", str(target), "--dry-run", cwd=repo
    )
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert len(read(chronicle)) == n
    r = inproc("restore", "bundle", str(archive), "--restore-root", str(target), "--json", cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
    last = read(chronicle)[-1]
    assert last["kind"] == "restore"
    assert last["data"] == {
        "run_id": "r1",
        "bundle_root": bundle_root,
        "target": _json(r)["details"]["result_root"],
        "source_archive": source,
    }

    broken = tmp_path / "broken.catalytic.zip"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    broken.write_bytes(bytes(data))
    b = inproc("verify", str(broken), "--json", cwd=repo)
    assert b.returncode != 0
    last = read(chronicle)[-1]
    assert last["kind"] == "verify"
    assert last["data"] == {
        "run_ids": [],
        "ok": False,
        "code": "ARCHIVE_INVALID",
        "source_archive": {
            "name": "broken.catalytic.zip",
            "sha256": hashlib.sha256(bytes(data)).hexdigest(),
        },
    }

    # a file larger than any archive (sparse: 5 GiB that cost no disk) is refused unread and
    # recorded without a hash, rather than read end to end for the record
    huge = tmp_path / "huge.catalytic.zip"
    with open(huge, "wb") as fh:
        fh.truncate(5 << 30)
    h = inproc("verify", str(huge), "--json", cwd=repo)
    assert (h.returncode, _json(h)["code"]) == (1, "ARCHIVE_INVALID")
    assert read(chronicle)[-1]["data"]["source_archive"] == {
        "name": "huge.catalytic.zip",
        "sha256": None,
    }


def test_two_archives_of_one_run_are_the_same_bytes(made: dict[str, Path], tmp_path: Path) -> None:
    repo = made["repo"]
    os.utime(repo / "outputs/sample.txt", (1_000_000, 1_000_000))
    os.utime(repo / "_runs/r1/TASK_SPEC.json", (2_000_000_000, 2_000_000_000))
    a = catalytic(
        "archive",
        "create",
        "_runs/r1",
        "-o",
        str(tmp_path / "a.zip"),
        cwd=repo,
        env=_env(made["home"], TZ="Pacific/Kiritimati", LC_ALL="C", LANG="C"),
    )
    assert a.returncode == 0, a.stderr
    import time

    old_umask, old_tz = os.umask(0o077), os.environ.get("TZ")
    os.environ["TZ"] = "America/Adak"
    time.tzset()
    try:
        b = inproc("archive", "create", "_runs/r1", "-o", str(tmp_path / "b.zip"), cwd=repo)
        os.umask(0o002)
        c = inproc("archive", "create", "_runs/r1", "-o", str(tmp_path / "c.zip"), cwd=repo)
    finally:
        os.umask(old_umask)
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()
    assert b.returncode == 0 and c.returncode == 0, b.stderr + c.stderr
    data = (tmp_path / "a.zip").read_bytes()
    assert (
        data
        == (tmp_path / "b.zip").read_bytes()
        == (tmp_path / "c.zip").read_bytes()
        == made["archive"].read_bytes()
    )
    again = inproc("archive", "create", "_runs/r1", "-o", str(tmp_path / "a.zip"), cwd=repo)
    assert again.returncode == 2 and (tmp_path / "a.zip").read_bytes() == data


def test_the_archive_is_a_canonical_stored_zip_and_a_valid_bag(
    made: dict[str, Path], tmp_path: Path
) -> None:
    bagit = extra_module("bagit")
    with zipfile.ZipFile(made["archive"]) as zf:
        infos = zf.infolist()
        assert all(
            i.compress_type == zipfile.ZIP_STORED
            and i.date_time == (1980, 1, 1, 0, 0, 0)
            and i.external_attr == 0o100644 << 16
            and not i.extra
            and not i.comment
            for i in infos
        )
        assert {i.filename.split("/")[0] for i in infos} == {"r1"}  # one top-level directory
        zf.extractall(tmp_path)
    bag = bagit.Bag(str(tmp_path / "r1"))
    bag.validate()  # every payload and tag manifest checksum, Payload-Oxum
    assert bag.info["External-Identifier"] == "r1"
    manifest = json.loads((tmp_path / "r1/ARCHIVE.json").read_bytes())
    names = {e["name"] for e in manifest["entries"]}
    assert names == {i.filename[3:] for i in infos} - {"ARCHIVE.json"}
    for e in manifest["entries"]:
        data = (tmp_path / "r1" / e["name"]).read_bytes()
        assert len(data) == e["size"] and hashlib.sha256(data).hexdigest() == e["sha256"]


def _crate(made: dict[str, Path], tmp_path: Path) -> Path:
    with zipfile.ZipFile(made["archive"]) as zf:
        zf.extractall(tmp_path)
    return tmp_path / "r1/data"


def test_the_crate_is_a_process_run_crate(made: dict[str, Path], tmp_path: Path) -> None:
    rocrate = extra_module("rocrate.rocrate")
    crate = rocrate.ROCrate(str(_crate(made, tmp_path)))
    actions = [e for e in crate.get_entities() if e.type == "CreateAction"]
    assert len(actions) == 1
    action = actions[0]
    assert action["actionStatus"] == "http://schema.org/CompletedActionStatus"
    assert action["startTime"].endswith("+00:00") and action["endTime"].endswith("+00:00")
    assert action["instrument"]["description"] == f"{sys.executable} job.py"
    assert action["agent"].type == "Person"
    hashes = json.loads((made["repo"] / "_runs/r1/OUTPUT_HASHES.json").read_text())["hashes"]
    results = {}
    for r in action["result"]:
        for name in [r["name"], *(r.get("alternateName") or [])]:
            results[name] = r["sha256"]
    assert results == {k: v.removeprefix("sha256:") for k, v in hashes.items()}
    assert len(action["result"]) == 3  # same.txt and again.txt share one stored blob
    profile = crate.root_dataset["conformsTo"]
    assert profile.id == "https://w3id.org/ro/wfrun/process/0.5"


@pytest.mark.slow
def test_the_crate_passes_the_ro_crate_validator(made: dict[str, Path], tmp_path: Path) -> None:
    """roc-validator with the Process Run Crate profile, every REQUIRED check. The network is
    unreachable here, so the RO-Crate JSON-LD context it would download is served from the copy
    the `rocrate` package ships (the 1.3 context, a superset of 1.1's terms)."""
    validator = extra_module("rocrate_validator")
    import requests
    import rocrate
    from rocrate_validator import models, services
    from rocrate_validator.utils import document_loader, http

    ctx = (Path(rocrate.__file__).parent / "data/ro-crate.jsonld").read_bytes()

    def local(self: object, url: str, *args: object, **kwargs: object) -> requests.Response:
        assert url.startswith("https://w3id.org/ro/crate/"), url
        resp = requests.Response()
        resp.status_code, resp._content, resp.url = 200, ctx, url
        resp.headers["Content-Type"] = "application/ld+json"
        return resp

    mp = pytest.MonkeyPatch()
    mp.setattr(http.HttpRequester, "get", local, raising=False)
    mp.setattr(document_loader, "_fetch_json_ld", lambda url: json.loads(ctx))
    try:
        settings = services.ValidationSettings(
            rocrate_uri=str(_crate(made, tmp_path)),
            profile_identifier="process-run-crate",
            requirement_severity=models.Severity.REQUIRED,
        )
        result = services.validate(settings)
    finally:
        mp.undo()
    issues = [i.message for i in result.get_issues()]
    assert result.passed(), issues
    assert validator is not None


def test_store_list_show_and_import(made: dict[str, Path], tmp_path: Path, make_repo) -> None:
    store = tmp_path / "store"
    store.mkdir()
    shutil.copyfile(made["archive"], store / "r1.catalytic.zip")
    (store / "broken.zip").write_bytes(made["archive"].read_bytes()[:-5])
    # one byte of an output changed: the structure and ARCHIVE.json are intact, a hash is not
    data = bytearray(made["archive"].read_bytes())
    data[bytes(data).index(b"twice")] ^= 0x20
    (store / "tampered.zip").write_bytes(bytes(data))

    # The default listing: the strict reader's structural checks, nothing hashed or verified
    # (no trust file needed), every claim shown as ARCHIVE.json makes it.
    fast = inproc("archive", "list", str(store), "--json", cwd=tmp_path)
    assert fast.returncode == 0, fast.stderr
    listed = _json(fast)["details"]
    assert listed["verified"] is False
    rows = {r["archive"]: r for r in listed["archives"]}
    assert sorted(rows) == ["broken.zip", "r1.catalytic.zip", "tampered.zip"]
    claim = json.loads(zipfile.ZipFile(made["archive"]).read("r1/ARCHIVE.json"))
    for name in ("r1.catalytic.zip", "tampered.zip"):
        assert rows[name] == {
            "archive": name,
            "size": made["archive"].stat().st_size,
            "verified": None,
            "valid": None,
            "trusted": None,
            "code": None,
            "run_id": "r1",
            "commit": claim["commit"],
            "signer": claim["validator_id"],
            "sha256": None,
        }
    assert rows["broken.zip"]["verified"] is False
    assert rows["broken.zip"]["code"] == "ARCHIVE_INVALID"
    human = inproc("archive", "list", str(store), cwd=tmp_path)
    assert "not verified: --verify" in human.stdout and "ARCHIVE_INVALID" in human.stdout

    lst = inproc(
        "archive",
        "list",
        str(store),
        "--verify",
        "--trust-file",
        str(made["trust"]),
        "--json",
        cwd=tmp_path,
    )
    assert lst.returncode == 0, lst.stderr
    assert _json(lst)["details"]["verified"] is True
    rows = {r["archive"]: r for r in _json(lst)["details"]["archives"]}
    good = rows["r1.catalytic.zip"]
    assert good["verified"] and good["run_id"] == "r1" and good["size"] > 0
    assert good["sha256"] == hashlib.sha256(made["archive"].read_bytes()).hexdigest()
    assert good["signer"] == claim["validator_id"]
    for name in ("broken.zip", "tampered.zip"):
        assert rows[name]["verified"] is False and rows[name]["code"] == "ARCHIVE_INVALID"

    show = inproc("archive", "show", str(store / "r1.catalytic.zip"), "--json", cwd=tmp_path)
    doc = _json(show)["details"]
    assert show.returncode == 0 and doc["manifest"]["run_id"] == "r1"
    assert doc["manifest"]["format_version"] == 1 and doc["manifest"]["history"] is False

    other = make_repo({".catalytic.toml": POLICY}, name="importer")
    (other / ".catalytic").mkdir(exist_ok=True)
    shutil.copyfile(made["trust"], other / ".catalytic/allowed_validators")
    imp = inproc("archive", "import", str(store / "r1.catalytic.zip"), "--json", cwd=other)
    assert imp.returncode == 0, imp.stdout + imp.stderr
    commit = _json(imp)["details"]["commit"]
    assert git(other, "cat-file", "-t", commit).stdout.strip() == "commit"
    v = inproc("verify", "_runs/r1", "--json", cwd=other)
    assert v.returncode == 0, v.stdout  # a native run now: outputs from its content store
    dup = inproc("archive", "import", str(store / "r1.catalytic.zip"), "--json", cwd=other)
    assert dup.returncode == 2 and _json(dup)["code"] == "RUN_EXISTS"


def test_a_signed_archive_cannot_carry_unsigned_files_or_another_name(
    made: dict[str, Path], tmp_path: Path, make_repo
) -> None:
    """A forger holding a genuinely signed archive adds a `conftest.py` to the run directory
    (which `pytest` in the importing repository would run), or presents the run under another
    run id, and recomputes every unsigned file around the change; the untouched repack is
    accepted, so only the change itself is what is refused."""
    from .archive_corpus import bag_files, relabelled, repack

    run_id, files = bag_files(made["archive"].read_bytes())
    planted = {**files, f"data/runs/{run_id}/conftest.py": b"import os\n"}
    forged = {
        "repacked.zip": repack(files, run_id),
        "conftest.zip": repack(planted, run_id),
        "relabelled.zip": relabelled(made["archive"].read_bytes(), "release-2026"),
    }
    for name, data in forged.items():
        (tmp_path / name).write_bytes(data)
    got = {}
    for name in forged:
        v = inproc("verify", name, "--trust-file", str(made["trust"]), "--json", cwd=tmp_path)
        row = _json(v)["details"]["results"][0]
        got[name] = (v.returncode, row["code"], (row.get("error_details") or {}).get("reason"))
    assert got == {
        "repacked.zip": (0, "PASS", None),
        "conftest.zip": (1, "ARCHIVE_INVALID", "UNSIGNED_ENTRY"),
        "relabelled.zip": (1, "ARCHIVE_INVALID", "METADATA_MISMATCH"),
    }
    other = make_repo({".catalytic.toml": POLICY}, name="importer2")
    before = git(other, "status", "--porcelain", "--ignored").stdout
    for name in ("conftest.zip", "relabelled.zip"):
        imp = inproc(
            "archive",
            "import",
            str(tmp_path / name),
            "--trust-file",
            str(made["trust"]),
            "--json",
            cwd=other,
        )
        assert (imp.returncode, _json(imp)["code"]) == (1, "ARCHIVE_INVALID"), imp.stdout
    assert not (other / "_runs").exists()
    assert git(other, "status", "--porcelain", "--ignored").stdout == before


def test_a_corrupt_archive_is_quarantined_with_a_sha_report(
    made: dict[str, Path], empty: Path
) -> None:
    path = empty / "r1.catalytic.zip"
    data = bytearray(path.read_bytes())
    at = bytes(data).index(b"weights") if b"weights" in data else bytes(data).index(b"twice")
    data[at] ^= 0x20  # one output byte
    path.write_bytes(bytes(data))
    digest = hashlib.sha256(bytes(data)).hexdigest()
    nq = inproc(
        "replay",
        "r1.catalytic.zip",
        "--trust-file",
        "allowed_signers",
        "--no-quarantine",
        "--json",
        cwd=empty,
    )
    assert nq.returncode == 1 and _json(nq)["code"] == "ARCHIVE_INVALID" and path.exists()
    doc = _replay_refused("r1.catalytic.zip", empty, "CRC_MISMATCH")
    assert not path.exists()
    moved = Path(doc["details"]["quarantine"])
    assert moved.read_bytes() == bytes(data)  # moved, never deleted
    report = json.loads(Path(str(moved) + ".QUARANTINE_REPORT.json").read_text())
    assert report["sha256"] == digest and report["reason"] == "CRC_MISMATCH"
    assert not any((empty / "replays").iterdir())  # nothing unpacked stays behind


def test_an_archive_on_another_file_system_is_quarantined_by_copy(
    made: dict[str, Path], empty: Path, elsewhere: Path
) -> None:
    """rename(2) cannot cross file systems (EXDEV): an archive on tmpfs, the quarantine on the
    working directory's disk. Before, the refusal became an internal error and the archive
    stayed; now it is copied, synced and linked into the quarantine, then removed."""
    src = elsewhere / "r1.catalytic.zip"
    data = made["archive"].read_bytes() + b"\0" * 8  # TRAILING_DATA
    src.write_bytes(data)
    doc = _replay_refused(str(src), empty, "TRAILING_DATA")
    moved = Path(doc["details"]["quarantine"])
    assert not src.exists() and moved.parent == empty / "quarantine"
    assert moved.read_bytes() == data
    report = json.loads(Path(str(moved) + ".QUARANTINE_REPORT.json").read_text())
    assert report["sha256"] == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in moved.parent.iterdir()) == sorted(
        [moved.name, moved.name + ".QUARANTINE_REPORT.json"]
    )


@pytest.fixture
def elsewhere(empty: Path) -> Iterator[Path]:
    """A new directory on another file system than `empty` (tmpfs), removed afterwards."""
    with on_another_file_system(empty) as where:
        yield where


def test_a_file_larger_than_any_archive_is_not_copied_into_the_quarantine(
    empty: Path, elsewhere: Path
) -> None:
    """Across file systems the quarantine copies; a sparse terabyte would cost a terabyte of
    blocks in the repository. It stays where it is, and the refusal says why."""
    huge = elsewhere / "huge.catalytic.zip"
    with open(huge, "wb") as fh:
        fh.truncate(5 << 30)
    doc = _replay_refused(str(huge), empty, "TRUNCATED")
    assert "larger than any archive" in doc["details"]["quarantine_error"]
    assert huge.stat().st_size == 5 << 30
    assert not (empty / "quarantine").exists() or list((empty / "quarantine").iterdir()) == []


def test_a_failed_quarantine_never_hides_the_refusal(made: dict[str, Path], empty: Path) -> None:
    (empty / "quarantine").write_text("a file where the quarantine directory would go\n")
    path = empty / "r1.catalytic.zip"
    data = path.read_bytes() + b"\0" * 8
    path.write_bytes(data)
    doc = _replay_refused(path.name, empty, "TRAILING_DATA")
    assert "quarantine_error" in doc["details"] and "could not be quarantined" in doc["message"]
    assert path.read_bytes() == data  # left where it was, unchanged


def test_attest_and_verify_an_attestation_of_an_archive(made: dict[str, Path], empty: Path) -> None:
    a = inproc("attest", "r1.catalytic.zip", "--sign", str(made["key"]), "--json", cwd=empty)
    assert a.returncode == 0, a.stdout + a.stderr
    att = empty / "r1.intoto.json"
    assert Path(_json(a)["details"]["attestation"]) == att and att.is_file()
    v = inproc(
        "verify",
        "r1.catalytic.zip",
        "--attestation",
        str(att),
        "--trust-file",
        "allowed_signers",
        "--json",
        cwd=empty,
    )
    assert v.returncode == 0, v.stdout + v.stderr
    assert _json(v)["details"]["results"][0]["trusted"] is True
    other = make_other_statement(att)
    bad = inproc(
        "verify",
        "r1.catalytic.zip",
        "--attestation",
        str(other),
        "--trust-file",
        "allowed_signers",
        "--json",
        cwd=empty,
    )
    assert bad.returncode == 1, bad.stdout


def make_other_statement(att: Path) -> Path:
    """The same envelope with one byte of its signature changed."""
    import base64

    doc = json.loads(att.read_text())
    sig = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
    sig[0] ^= 1
    doc["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    out = att.with_name("tampered.intoto.json")
    out.write_text(json.dumps(doc))
    return out


def test_history_and_a_submodule_travel_as_git_objects(make_repo, tmp_path: Path) -> None:
    """--history carries the ancestry; a submodule is recorded as its gitlink (its commit is
    another repository's) and the standalone checkout shows it as such."""
    from catalytic_hooks.archive.create import create_archive
    from catalytic_hooks.archive.read import opened_archive
    from catalytic_hooks.archive.zipfmt import Limits

    from .helpers import make_bundle

    sub = make_repo({"lib.txt": "library\n"}, name="sub")
    repo = make_repo({"a.txt": "one\n"}, name="main")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "vendor/sub")
    git(repo, "commit", "-qm", "add submodule")
    (repo / "a.txt").write_text("two\n")
    git(repo, "commit", "-qam", "two")
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    run = make_bundle(
        repo / "_runs" / "s1",
        repo,
        {"out/x.txt": b"x\n"},
        task_spec=json.dumps({"task_id": "s1", "git_commit": head}).encode(),
    )
    for history in (False, True):
        out = tmp_path / f"s1-{history}.zip"
        info = create_archive(run, out, history=history, project_root=repo)
        reached = git(
            repo, "rev-list", "--objects", *([] if history else ["--no-walk"]), head
        ).stdout.split("\n")
        assert info["git_objects"] == len([r for r in reached if r]), history
        with opened_archive(out, Limits()) as (_, proved):
            assert proved is not None and proved.commit == head
            assert proved.objects == info["git_objects"]
    wt = tmp_path / "checkout"
    r = inproc(
        "restore",
        "bundle",
        str(tmp_path / "s1-False.zip"),
        "--worktree",
        str(wt),
        "--allow-untrusted",
        "--json",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert git(wt, "rev-parse", "HEAD").stdout.strip() == head
    listing = git(wt, "ls-tree", "HEAD", "vendor/sub").stdout
    assert listing.startswith("160000 commit ")
    assert git(wt, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
    # Under a linked directory, a failed checkout is removed like any other: before, the
    # removal refused the link (opened without following it), the half-made checkout stayed,
    # and its error (INTERNAL) replaced the real one.
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    bad = inproc(
        "restore",
        "bundle",
        str(tmp_path / "s1-False.zip"),
        "--worktree",
        str(tmp_path / "link/wt"),
        "--rev",
        "0" * 40,
        "--allow-untrusted",
        "--json",
        cwd=tmp_path,
    )
    assert (bad.returncode, _json(bad)["code"]) == (2, "USAGE"), bad.stdout
    assert list((tmp_path / "real").iterdir()) == []


@needs_tool(shutil.which("git-lfs") is not None, "git-lfs is not installed here")
def test_a_git_lfs_output_carries_its_content_never_its_pointer(make_repo, tmp_path: Path) -> None:
    from catalytic_hooks.archive.create import create_archive
    from catalytic_hooks.core.errors import CatalyticError

    from .helpers import make_bundle

    repo = make_repo({}, name="lfs")
    git(repo, "lfs", "install", "--local")
    git(repo, "lfs", "track", "outputs/*.bin")
    content = b"\x00model weights\n" * 1000
    run = make_bundle(repo / "_runs" / "l1", repo, {"outputs/model.bin": content}, sign=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "lfs output")
    pointer = git(repo, "cat-file", "blob", "HEAD:outputs/model.bin").stdout.encode()
    assert pointer.startswith(b"version https://git-lfs")  # git holds the pointer
    out = tmp_path / "l1.zip"
    create_archive(run, out, project_root=repo)
    with zipfile.ZipFile(out) as zf:
        stored = [n for n in zf.namelist() if "/objects/sha256/" in n]
        assert [zf.read(n) for n in stored] == [content]
    (repo / "outputs/model.bin").write_bytes(pointer)  # a clone that never pulled the content
    with pytest.raises(CatalyticError) as err:
        create_archive(run, tmp_path / "l1-again.zip", project_root=repo)
    assert "git lfs pull" in err.value.message and not (tmp_path / "l1-again.zip").exists()


@pytest.mark.parametrize("edited", ["out/a.txt", "out/b.txt"])
def test_an_output_edited_after_the_run_is_never_archived(tmp_path: Path, edited: str) -> None:
    """Outputs are hashed once, as they are written into the archive (b.txt has a.txt's bytes,
    so it is only checked, never stored twice): an edited one refuses the archive."""
    from catalytic_hooks.archive.create import create_archive
    from catalytic_hooks.core.errors import CatalyticError, ErrorCode

    from .helpers import make_bundle

    run = make_bundle(
        tmp_path / "_runs" / "e1", tmp_path, {"out/a.txt": b"same\n", "out/b.txt": b"same\n"}
    )
    ok = create_archive(run, tmp_path / "ok.zip", project_root=tmp_path)
    with zipfile.ZipFile(tmp_path / "ok.zip") as zf:
        assert sum("/objects/sha256/" in n for n in zf.namelist()) == 1
    assert ok["entries"] > 0
    assert gc.isenabled()  # create pauses the cycle collector while it works, and only then
    (tmp_path / edited).write_bytes(b"SAME\n")
    with pytest.raises(CatalyticError) as err:
        create_archive(run, tmp_path / "bad.zip", project_root=tmp_path)
    assert err.value.code is ErrorCode.HASH_MISMATCH
    assert gc.isenabled()
    assert not (tmp_path / "bad.zip").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_runs", "ok.zip", "out"]


def _chain(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """Two signed runs as directories (a, b under proj) and as archives in `away`, a
    repository with the default policy."""
    from catalytic_hooks.archive.create import create_archive

    from .helpers import make_bundle

    proj = tmp_path / "proj"
    a = make_bundle(proj / "_runs/a", proj, {"out/a.txt": b"a\n"})
    b = make_bundle(proj / "_runs/b", proj, {"out/b.txt": b"b\n", "out/c.txt": b"c\n"})
    away = tmp_path / "away"
    away.mkdir()
    git(away, "init", "-q")
    for run in (a, b):
        create_archive(run, away / f"{run.name}.zip", project_root=proj)
    return proj, a, b, away


def test_verify_chain_takes_archives(tmp_path: Path) -> None:
    proj, a, b, away = _chain(tmp_path)
    ref = inproc(
        "verify", "--chain", str(a), str(b), "--project-root", str(proj), "--allow-untrusted",
        "--json", cwd=tmp_path,
    )  # fmt: skip
    v = inproc("verify", "--chain", "a.zip", "b.zip", "--allow-untrusted", "--json", cwd=away)
    assert v.returncode == ref.returncode == 0, v.stdout + v.stderr
    got = _json(v)["details"]
    assert got["chain_root"] == _json(ref)["details"]["chain_root"] and got["chain_root"]
    assert [r["source_archive"]["name"] for r in got["results"]] == ["a.zip", "b.zip"]


@pytest.mark.slow
def test_verify_chain_and_restore_chain_take_archives(tmp_path: Path) -> None:
    """`verify --chain` and `restore chain` of archive files give the chain root of the same
    runs as directories, restore every run, are recorded with every archive's name and hash in
    the repository they run in, and refuse a broken archive before anything is written."""
    proj, a, b, away = _chain(tmp_path)
    digests = {n: hashlib.sha256((away / n).read_bytes()).hexdigest() for n in ("a.zip", "b.zip")}
    sources = [{"name": n, "sha256": digests[n]} for n in ("a.zip", "b.zip")]

    ref = inproc(
        "verify", "--chain", str(a), str(b), "--project-root", str(proj), "--allow-untrusted",
        "--json", cwd=tmp_path,
    )  # fmt: skip
    v = inproc("verify", "--chain", "a.zip", "b.zip", "--allow-untrusted", "--json", cwd=away)
    assert v.returncode == ref.returncode == 0, v.stdout + v.stderr
    got, want = _json(v)["details"], _json(ref)["details"]
    assert got["chain_root"] == want["chain_root"] and got["chain_root"]
    assert [r["run_id"] for r in got["results"]] == ["a", "b"]
    assert [r["source_archive"]["name"] for r in got["results"]] == ["a.zip", "b.zip"]
    chronicle = away / ".catalytic/chronicle.jsonl"
    last = read(chronicle)[-1]
    assert last["kind"] == "verify" and last["data"]["source_archives"] == sources
    assert last["data"]["chain_root"] == got["chain_root"]
    assert last["data"]["run_ids"] == ["a", "b"]

    out = away / "out"
    out.mkdir()
    r = inproc(
        "restore", "chain", "a.zip", "b.zip", "--restore-root", str(out), "--allow-untrusted",
        "--json", cwd=away,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert _json(r)["details"]["chain_root"] == got["chain_root"]
    assert (out / "a/out/a.txt").read_bytes() == b"a\n"
    assert (out / "b/out/c.txt").read_bytes() == b"c\n"
    last = read(chronicle)[-1]
    assert last["kind"] == "restore"
    assert last["data"] == {
        "run_ids": ["a", "b"],
        "chain_root": got["chain_root"],
        "target": str(out),
        "source_archives": sources,
    }

    mixed = inproc(
        "restore", "chain", str(a), "b.zip", "--restore-root", str(out), "--json", cwd=away
    )
    assert mixed.returncode == 2 and _json(mixed)["code"] == "USAGE"
    broken = bytearray((away / "b.zip").read_bytes())
    broken[len(broken) // 3] ^= 0xFF
    (away / "b.zip").write_bytes(bytes(broken))
    bad = inproc("verify", "--chain", "a.zip", "b.zip", "--allow-untrusted", "--json", cwd=away)
    assert bad.returncode == 1 and _json(bad)["code"] == "ARCHIVE_INVALID"
    assert read(chronicle)[-1]["data"]["ok"] is False
    fresh = away / "fresh"
    fresh.mkdir()
    n = len(read(chronicle))
    refused = inproc(
        "restore", "chain", "a.zip", "b.zip", "--restore-root", str(fresh), "--allow-untrusted",
        "--json", cwd=away,
    )  # fmt: skip
    assert refused.returncode == 1 and _json(refused)["code"] == "ARCHIVE_INVALID"
    assert list(fresh.iterdir()) == [] and len(read(chronicle)) == n
