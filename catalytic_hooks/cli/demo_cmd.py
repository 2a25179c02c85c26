"""`catalytic demo` (the main job, end to end on a throwaway repository) and `catalytic init`."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from catalytic_hooks.cli.options import JsonOpt
from catalytic_hooks.cli.output import CommandExit, emit_json, envelope, handled, say
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode, VerdictCode
from catalytic_hooks.git.repo import clean_env

INIT_TEMPLATE = """\
# catalytic-hooks policy (see README: "Adopting catalytic-hooks")
durable_roots = []      # paths a run may create, modify or delete
tmp_roots = []          # scratch paths that must be empty when an operation ends
exclusions = []         # ignored entirely
protected_roots = ["."] # must not change outside durable roots
run_roots = ["_runs"]   # where run bundles live
"""


@dataclass
class Demo:
    repo: Path
    json_mode: bool
    steps: list[dict[str, object]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = clean_env(
            {
                "GIT_AUTHOR_NAME": "Demo",
                "GIT_AUTHOR_EMAIL": "demo@example.invalid",
                "GIT_COMMITTER_NAME": "Demo",
                "GIT_COMMITTER_EMAIL": "demo@example.invalid",
            }
        )
        # The demo runs this installation's catalytic, whatever PATH says.
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        # Rebuilt environments (and uv's cache) stay in the throwaway directory.
        env["XDG_CACHE_HOME"] = str(self.repo.parent / "cache")
        env["PIP_CONFIG_FILE"] = os.devnull
        return env

    def sh(
        self, *cmd: str, stdin: str | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(cmd),
            cwd=cwd or self.repo,
            env=self.env(),
            text=True,
            input=stdin,
            capture_output=True,
        )

    def cat(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.sh(sys.executable, "-m", "catalytic_hooks", *args, cwd=cwd)

    def step(
        self, title: str, proc: subprocess.CompletedProcess[str], expect: int, shown: str
    ) -> bool:
        ok = proc.returncode == expect
        self.steps.append(
            {
                "step": title,
                "command": shown,
                "exit": proc.returncode,
                "expected_exit": expect,
                "ok": ok,
            }
        )
        if not self.json_mode:
            mark = "ok  " if ok else "FAIL"
            say(f"[{mark}] {title}")
            say(f"       $ {shown}  -> exit {proc.returncode} (expected {expect})")
            text = (proc.stdout + proc.stderr).strip("\n")
            for line in text.splitlines()[:8]:
                say(f"       | {line}")
        return ok

    def run_cat(self, title: str, args: list[str], expect: int = 0) -> bool:
        return self.step(title, self.cat(*args), expect, "catalytic " + shlex.join(args))

    def run_sh(self, title: str, cmd: list[str], expect: int = 0) -> bool:
        return self.step(title, self.sh(*cmd), expect, shlex.join(cmd))


def write(repo: Path, rel: str, text: str) -> None:
    p = repo / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def scenario(d: Demo) -> None:
    r = d.repo
    d.run_sh("create a repository", ["git", "init", "-q", "-b", "main"])
    write(r, "data/raw/measurements.csv", "id,value\n1,0.5\n2,0.75\n")
    write(r, "analysis.py", DEMO_SCRIPT)
    write(r, ".gitignore", "_tmp/\n")
    d.run_sh("stage the project as it was before catalytic", ["git", "add", "-A"])
    d.run_sh("commit it", ["git", "commit", "-q", "-m", "the project before catalytic"])
    key = demo_key(r)
    d.run_cat("create a throwaway signing key for runs", ["keygen", "--out", key])
    d.run_sh(
        "create a maintainer's SSH key (for signed amendments)",
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "maintainer",
            "-f",
            maintainer_key(r),
        ],
    )
    # Adoption writes the policy and the trust file in one commit on top of the history: the
    # history is the baseline, everything after it is judged.
    d.run_cat(
        "adopt catalytic-hooks (policy, trust file, baseline)",
        [
            "adopt",
            "--durable-roots",
            "outputs",
            "--tmp-roots",
            "_tmp",
            "--trust",
            f"demo={key}.pub",
            "--trust",
            f"maintainer={maintainer_key(r)}.pub",
        ],
    )
    d.run_cat("PRE digest of the working tree", ["digest", "--output", "../pre.json"])
    # A catalytic operation by hand: scratch in _tmp, output in outputs/.
    write(r, "_tmp/scratch.bin", "scratch")
    write(r, "outputs/draft.txt", "draft\n")
    os.remove(r / "_tmp/scratch.bin")
    os.remove(r / "outputs/draft.txt")
    d.run_cat("POST digest after a clean operation", ["digest", "--output", "../post.json"])
    d.run_cat(
        "purity scan: PASS",
        ["purity-scan", "../pre.json", "../post.json", "--output", "../purity.json"],
    )
    d.run_cat(
        "restore proof: PASS", ["restore-proof", "../pre.json", "../post.json", "../purity.json"]
    )
    write(r, "data/raw/measurements.csv", "id,value\n1,0.5\n2,0.99\n")
    d.run_cat("POST digest after a dirty operation", ["digest", "--output", "../post.json"])
    d.run_cat(
        "purity scan: FAIL (a protected file changed)",
        ["purity-scan", "../pre.json", "../post.json", "--output", "../purity.json"],
        expect=1,
    )
    d.run_sh("undo the damage", ["git", "checkout", "--", "data/raw/measurements.csv"])
    hooks(d)


def hooks(d: Demo) -> None:
    r = d.repo
    d.run_cat("install the native git hooks", ["install"])
    write(r, "data/raw/measurements.csv", "id,value\n1,0.5\n2,0.99\n")
    d.run_sh("stage a change to protected raw data", ["git", "add", "data/raw/measurements.csv"])
    d.run_sh(
        "the pre-commit hook refuses the bad commit",
        ["git", "commit", "-q", "-m", "tweak raw data"],
        expect=1,
    )
    d.run_sh(
        "unstage and restore the raw data",
        ["git", "restore", "--staged", "--worktree", "data/raw/measurements.csv"],
    )
    write(r, "outputs/README.txt", "results of the analysis runs\n")
    d.run_sh("stage a durable output", ["git", "add", "outputs/README.txt"])
    d.run_sh(
        "the pre-commit hook accepts the clean commit",
        ["git", "commit", "-q", "-m", "add outputs readme"],
    )
    bundles(d)


def demo_key(repo: Path) -> str:
    return str(repo.parent / "keys" / "demo_ed25519")


def maintainer_key(repo: Path) -> str:
    return str(repo.parent / "keys" / "maintainer_ssh_ed25519")


def wheelhouse(repo: Path) -> Path:
    return repo.parent / "wheelhouse"


def _demo_wheel(house: Path) -> Path:
    """A real wheel (PEP 427: METADATA, WHEEL, RECORD with every file's hash) of the tiny library
    the analysis imports, written here: the demo needs no network and no index."""
    import base64
    import hashlib
    import zipfile

    info = "demo_stats-1.0.dist-info"
    files = {
        "demo_stats/__init__.py": b"def mean(xs):\n    return sum(xs) / len(xs)\n",
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: demo-stats\nVersion: 1.0\n\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: catalytic demo\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n\n",
    }

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{p},sha256={b64(d)},{len(d)}\n" for p, d in files.items())
    record += f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    house.mkdir(parents=True, exist_ok=True)
    target = house / "demo_stats-1.0-py3-none-any.whl"
    with zipfile.ZipFile(target, "w") as z:
        for p, data in files.items():
            z.writestr(zipfile.ZipInfo(p, (2020, 1, 1, 0, 0, 0)), data)
    return target


def project_env(d: Demo) -> str:
    """The project's own virtual environment, apart from catalytic's: the analysis imports a
    library installed there from a wheelhouse. Returns the environment's python."""
    import hashlib

    from catalytic_hooks.environment.build import _uv

    wheel = _demo_wheel(wheelhouse(d.repo))
    venv = d.repo.parent / "project-venv"
    py = str(venv / "bin" / "python")
    uv = _uv()
    if uv is not None:
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        d.run_sh(
            "the project's own environment (uv venv), apart from catalytic's",
            [uv, "venv", "--no-config", "-q", "--python", sys.executable, str(venv)],
        )
        d.run_sh(
            "install its library from the wheelhouse, hash-pinned",
            [
                uv,
                "pip",
                "install",
                "--no-config",
                "-q",
                "--python",
                py,
                "--offline",
                f"demo-stats @ {wheel.as_uri()}#sha256={digest}",
            ],
        )
    else:
        d.run_sh(
            "the project's own environment (python -m venv), apart from catalytic's",
            [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        )
        d.run_sh(
            "install its library from the wheelhouse",
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                py,
                "install",
                "-q",
                "--no-deps",
                "--no-index",
                str(wheel),
            ],
        )
    return py


def bundles(d: Demo) -> None:
    r = d.repo
    key = demo_key(r)
    python = project_env(d)
    d.run_cat(
        "a messy command run catalytically in the project's environment (--restore "
        "undoes its side effects; the environment is recorded)",
        [
            "run",
            "--run-id",
            "demo-001",
            "--restore",
            "--sign",
            key,
            "--metrics",
            "outputs/metrics.json",
            "--",
            python,
            "analysis.py",
        ],
    )
    d.run_sh(
        "the raw data is untouched",
        ["git", "diff", "--exit-code", "--", "data/raw/measurements.csv"],
    )
    d.run_cat("verify the signed bundle", ["verify", "_runs/demo-001"])
    d.run_cat(
        "export the run's in-toto attestation (DSSE envelope)",
        ["attest", "_runs/demo-001", "--sign", key],
    )
    d.run_cat(
        "verify the attestation against the bundle and the files on disk",
        ["verify", "_runs/demo-001", "--attestation", "_runs/demo-001/attestation.intoto.json"],
    )
    d.run_sh(
        "verify who signed it with OpenSSH alone (the trust file is an allowed_signers file)",
        [
            "sh",
            "-c",
            "ssh-keygen -Y verify -f .catalytic/allowed_validators -I demo "
            "-n catalytic -s _runs/demo-001/ssh-signature.sig "
            "< _runs/demo-001/SIGNED_PAYLOAD.json",
        ],
    )
    d.run_sh("stage the bundle and its outputs", ["git", "add", "_runs", "outputs"])
    d.run_sh("commit the bundle and its outputs", ["git", "commit", "-q", "-m", "run demo-001"])
    import shutil

    tampered = r.parent / "tampered" / "demo-001"
    shutil.copytree(r / "_runs/demo-001", tampered)
    status = tampered / "STATUS.json"
    status.write_bytes(status.read_bytes().replace(b'"success"', b'"Success"'))
    d.run_cat(
        "a tampered copy is rejected", ["verify", str(tampered), "--project-root", str(r)], expect=1
    )
    restore(d)


def restore(d: Demo) -> None:
    wt = d.repo.parent / "restored"
    d.run_cat(
        "restore the bundle into a fresh worktree at the recorded commit",
        ["restore", "bundle", "_runs/demo-001", "--worktree", str(wt)],
    )
    d.run_sh("the restore manifest", ["cat", str(wt / "RESTORE_MANIFEST.json")])
    d.run_cat("replay the run at its recorded commit: verdict exact", ["replay", "_runs/demo-001"])
    d.run_cat(
        "replay it in a rebuilt copy of its recorded environment (exact pins, "
        "hash-checked), offline from the wheelhouse: exact",
        [
            "replay",
            "_runs/demo-001",
            "--rebuild-env",
            "--offline",
            "--find-links",
            str(wheelhouse(d.repo)),
        ],
    )
    handoff(d)
    d.run_cat("verify the chronicle of everything above", ["chronicle", "verify"])
    d.run_cat("the chronicle", ["chronicle", "show"])
    server(d)


def handoff(d: Demo) -> None:
    """Hand the run to someone else: one archive file and a trust file, replayed in a directory
    outside any repository."""
    import shutil

    away = d.repo.parent / "elsewhere"
    away.mkdir()
    shutil.copyfile(d.repo / ".catalytic/allowed_validators", away / "allowed_signers")
    archive = away / "demo-001.catalytic.zip"
    d.run_cat(
        "archive the run into one deterministic file (bundle, outputs, commit objects)",
        ["archive", "create", "_runs/demo-001", "-o", str(archive)],
    )
    args = ["replay", archive.name, "--trust-file", "allowed_signers"]
    d.step(
        "replay it from the file outside the repository, with a trust file only: exact",
        d.cat(*args, cwd=away),
        0,
        f"(cd {away}) catalytic {shlex.join(args)}",
    )


def server(d: Demo) -> None:
    r = d.repo
    bare = str(r.parent / "server.git")
    raw = "data/raw/measurements.csv"
    d.run_sh("create the team's server (a bare repository)", ["git", "init", "-q", "--bare", bare])
    d.run_cat("install the server-side gate", ["install", "--server", "--git-dir", bare])
    d.run_sh(
        "the first push of the adopted history is accepted", ["git", "push", "-q", bare, "main"]
    )
    write(r, raw, "id,value\n1,0.5\n2,0.99\n")
    d.run_sh(
        "forge the raw data, skipping the local hook",
        ["git", "commit", "-q", "--no-verify", "-am", "tweak raw data"],
    )
    d.run_sh(
        "the server refuses the --no-verify push",
        ["git", "push", "-q", "--no-verify", bare, "main"],
        expect=1,
    )
    d.run_sh("drop the forged commit", ["git", "reset", "-q", "--hard", "HEAD~1"])
    write(r, raw, "id,value\n1,0.5\n2,0.8\n")
    d.run_sh(
        "a reviewed correction, signed by the maintainer with a Catalytic-Amend trailer",
        [
            "git",
            "-c",
            "gpg.format=ssh",
            "-c",
            f"user.signingkey={maintainer_key(r)}",
            "commit",
            "-q",
            "--no-verify",
            "-S",
            "-am",
            "correct sensor 2",
            "--trailer",
            "Catalytic-Amend: sensor 2 recalibrated (ticket 7)",
        ],
    )
    d.run_sh("the server accepts the signed amendment", ["git", "push", bare, "main"])


DEMO_SCRIPT = """\
import csv, json, os, pathlib, random
from demo_stats import mean
random.seed(int(os.environ.get("CATALYTIC_SEED", "0")))
rows = list(csv.DictReader(open("data/raw/measurements.csv")))
values = [float(r["value"]) for r in rows]
# A messy pipeline: it "cleans" its input in place and leaves a checkpoint in scratch space.
with open("data/raw/measurements.csv", "a") as fh:
    fh.write("3,nan\\n")
pathlib.Path("_tmp").mkdir(exist_ok=True)
pathlib.Path("_tmp/checkpoint.bin").write_bytes(os.urandom(64))
pathlib.Path("outputs").mkdir(exist_ok=True)
m = mean(values)
pathlib.Path("outputs/summary.txt").write_text(f"mean={m}\\n")
pathlib.Path("outputs/metrics.json").write_text(json.dumps({"mean": m, "n": len(values)}))
"""


def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the throwaway repository.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Run the whole lifecycle on a throwaway repository and print each step's verdict."""
    with handled(json_mode):
        base = Path(tempfile.mkdtemp(prefix="catalytic-demo-"))
        d = Demo(base / "repo", json_mode)
        d.repo.mkdir()
        # The report outlives the throwaway repository: it is the demo's result to look at.
        report = Path(tempfile.mkdtemp(prefix="catalytic-demo-report-")) / "report.html"
        if not json_mode:
            say(f"catalytic demo in {d.repo}")
        try:
            scenario(d)
            d.run_cat(
                "render the chronicle as one HTML page (opens from disk, no network)",
                ["report", "--out", str(report.parent)],
            )
        finally:
            if not keep:
                import shutil

                shutil.rmtree(base, ignore_errors=True)
        ok = all(bool(s["ok"]) for s in d.steps)
        if json_mode:
            emit_json(
                envelope(
                    ok,
                    SuccessCode.PASS if ok else VerdictCode.FAIL,
                    {
                        "steps": d.steps,
                        "repository": str(d.repo) if keep else None,
                        "report": str(report) if report.exists() else None,
                    },
                )
            )
        else:
            say("")
            say("summary")
            for s in d.steps:
                say(f"  {'PASS' if s['ok'] else 'FAIL'}  {s['step']}")
            say(f"verdict: {'PASS' if ok else 'FAIL'} ({len(d.steps)} steps)")
            if report.exists():
                say(f"report: {report}")
        raise CommandExit(0 if ok else 1)


def init(
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Write a commented `.catalytic.toml` at the repository root."""
    from catalytic_hooks.cli.context import open_repo

    with handled(json_mode):
        repo = open_repo(None)
        target = repo.top / ".catalytic.toml"
        if target.exists() and not force:
            raise CatalyticError(ErrorCode.USAGE, f"{target} exists (use --force)")
        from catalytic_hooks.fs.files import atomic_write

        atomic_write(target, INIT_TEMPLATE.encode())
        if json_mode:
            emit_json(envelope(True, SuccessCode.OK, {"path": str(target)}))
        else:
            say(f"wrote {target}")
