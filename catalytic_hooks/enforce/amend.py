"""Signed amendments: the reviewed way to change a protected path, the policy or the trust file.

A commit is an amendment when it carries a `Catalytic-Amend: <reason>` trailer. It is accepted
when git itself verifies its SSH signature (`gpg.format=ssh`, `git commit -S`) against an
allowed-signers file generated from the base's trust file, and the key that signed (its
fingerprint, as git reports it) is on a line of that file that is inside its validity window now.
The window is never judged by name: after an OpenSSH-style rotation the revoked key and the new
one share a name. Nor by git: git would judge it at the commit's date, which the signer chose, so
the generated file carries no windows and git checks only the signature. The git configuration
that decides how signatures are checked is forced on the command line, so the judged repository
cannot swap the verifier.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from catalytic_hooks.enforce.baseline import Baseline
from catalytic_hooks.git.history import ssh_signature, trailer_values
from catalytic_hooks.git.repo import Repo

TRAILER = "Catalytic-Amend"

_STATUS = {
    "N": "it is not signed",
    "B": "its signature is bad (the commit was altered after signing)",
    "U": "it is signed by a key that is not in the base's trust file",
    "X": "its signature has expired",
    "Y": "it is signed by an expired key",
    "R": "it is signed by a revoked key",
    "E": "its signature cannot be checked (is ssh-keygen installed?)",
}


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str  # the trailer's reason when accepted, else why the amendment was refused
    signer: str | None = None


def trailer(repo: Repo, commit: str) -> str | None:
    reasons = trailer_values(repo, commit, TRAILER)
    return "; ".join(reasons) if reasons else None


def allowed_signers(base: Baseline) -> str:
    """The base's trust file as OpenSSH allowed_signers lines (keys given only as `id:` cannot
    sign: they have no public key to check with)."""
    from catalytic_hooks.bundle.trust import ssh_key_text

    lines = []
    for v in base.trust().validators:
        if v.key_text.startswith(("ssh-ed25519 ", "ed25519:")) and v.allows("git"):
            lines.append(f'{v.name} namespaces="git" {ssh_key_text(v.key_text)}\n')
    return "".join(lines)


def verify_amendment(repo: Repo, commit: str, base: Baseline) -> Verdict | None:
    """None when `commit` is no amendment (no trailer); else whether it is accepted."""
    reason = trailer(repo, commit)
    if reason is None:
        return None
    with tempfile.TemporaryDirectory(prefix="catalytic-signers-") as d:
        path = os.path.join(d, "allowed_signers")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(allowed_signers(base))
        status, principal, fingerprint = ssh_signature(repo, commit, path)
    if status != "G":
        return Verdict(False, f"amendment refused: {_STATUS.get(status, 'unverifiable')}")
    trust = base.trust()
    key = trust.by_fingerprint(fingerprint)
    signer, why = (
        trust.signer(key, "git")
        if key is not None
        else (None, "it is signed by a key that is not in the base's trust file")
    )
    if signer is None:
        return Verdict(False, f"amendment refused: {why} (signed by {fingerprint})", principal)
    return Verdict(True, reason, signer.name)
