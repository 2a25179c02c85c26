"""Where a push's time goes: the upload behind the push figure of registry_bench.py.

    python bench/push_budget.py [--mib 1024] [--repeat 5] [--work DIR]

Uploads one blob of MIB random bytes to Debian's docker-registry on loopback, in every round
each way into a new repository (so the bytes really travel), each in a fresh process, the order
rotating from round to round:

- `curl`: `curl -T FILE` PUT to an upload location the registry opened, the digest known
  beforehand (the reference of registry_bench.py);
- `put`: the push's own upload of a blob whose digest is known (`Client.upload`: one streamed
  `PUT ?digest=`, the body read into one reused buffer and sent from it);
- `sendfile`: the same PUT with the body sent by `socket.sendfile`, as the push did before; a
  measurement only, never a path of the product;
- `patch`: one `PATCH` carrying the whole blob, then `PUT ?digest=` with no body: what a first
  push sends while it hashes, here with the digest known, to show what the second request
  costs;
- `hashed`: `put` after hashing the file in the same process, as a push whose digest must come
  first (a run pushed again) does.

For each it prints the wall time, the process's user and system CPU (wait4), and the CPU the
registry spent receiving (/proc/PID/stat); then the medians. `--work DIR` puts the blob and the
registry's storage under DIR (say /dev/shm). Not run by the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from budget import Row, print_medians, random_blob, timed, upload_url

WAYS = ("curl", "put", "sendfile", "patch", "hashed")


def child(way: str, host: str, name: str, digest: str, size: int, path: Path) -> None:
    """One upload in this process."""
    from catalytic_hooks.registry.client import Client
    from catalytic_hooks.registry.reference import parse

    client = Client(parse(f"oci://{host}/{name}:x"))
    if way == "sendfile":
        real = Client._send_file

        def by_sendfile(
            self: Client, conn: Any, method: str, target: str, headers: Any, fh: Any
        ) -> None:
            if not int(headers.get("Content-Length") or 0):
                return real(self, conn, method, target, headers, fh)
            conn.putrequest(method, target)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders()
            sock: socket.socket = conn.sock
            sock.sendfile(fh, fh.tell(), int(headers["Content-Length"]))

        Client._send_file = by_sendfile  # type: ignore[method-assign]
    if way == "patch":
        if not client._chunked(digest, path, size, size):
            raise SystemExit("the registry refused the chunk")
    else:
        if way == "hashed":
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
            assert f"sha256:{h.hexdigest()}" == digest
        client.upload(digest, path, size)
    client.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--work", type=Path, default=None, help="where to write (default: /tmp)")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        way, host, name, digest, size, path = args.child
        child(way, host, name, digest, int(size), Path(path))
        return
    from tests.registries import Distribution  # here: a child needs none of the test helpers

    work = Path(tempfile.mkdtemp(prefix="push-budget-", dir=args.work))
    blob = work / "blob"
    digest, size = random_blob(blob, args.mib)
    reg = Distribution(work).start()
    assert reg.proc is not None
    rows: dict[str, list[Row]] = {w: [] for w in WAYS}
    try:
        for i in range(args.repeat):
            for way in WAYS[i % len(WAYS) :] + WAYS[: i % len(WAYS)]:
                name = f"budget/{way}{i}"
                if way == "curl":
                    cmd = ["curl", "-sf", "-X", "PUT", "-T", str(blob), "-H"]
                    cmd += ["Content-Type: application/octet-stream"]
                    cmd += [upload_url(reg.host, name, digest)]
                else:
                    cmd = [sys.executable, __file__, "--child", way, reg.host, name, digest]
                    cmd += [str(size), str(blob)]
                row, status, _ = timed(cmd, reg.proc.pid, f"round {i + 1} {way}")
                if status != 0 or reg.blob_data(digest).stat().st_size != size:
                    raise SystemExit(f"{way} failed")
                rows[way].append(row)
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    print_medians(rows, args.mib, args.repeat)


if __name__ == "__main__":
    main()
