"""The one clock: UTC timestamps in the spellings the formats use."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def stamp_seconds(when: datetime | None = None) -> str:
    """`2026-11-30T21:17:33Z`: receipts, STATUS, SIGNATURE.signed_at, reports."""
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp_micros(when: datetime | None = None) -> str:
    """`2026-11-30T21:17:33.123456Z`: chronicle records (many may fall in one second)."""
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stamp_compact(when: datetime | None = None) -> str:
    """`20261130T211733123456Z`: file names that must sort by time and never collide."""
    return (when or now()).strftime("%Y%m%dT%H%M%S%fZ")
