"""How many workers parallel hashing uses (processes for many small files, threads for large
ones): every core, capped so a big machine does not drown the disk in seeks."""

from __future__ import annotations

import os

MAX_WORKERS = 8


def worker_count(minimum: int = 1) -> int:
    return max(minimum, min(MAX_WORKERS, os.cpu_count() or 1))
