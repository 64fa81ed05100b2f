"""A job's status and metadata, and a change to them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

JOB_STATUSES = ("open", "closed")
METADATA_FIELDS = ("customer", "title", "reference")
MAX_METADATA_CHARS = 500


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A job's metadata; a job nobody described yet is open with no metadata."""

    job_id: str
    status: str
    customer: str | None
    title: str | None
    reference: str | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class JobChanges:
    """A PATCH: ``None`` leaves a field as it is; ``clear`` names fields set to null."""

    status: str | None = None
    customer: str | None = None
    title: str | None = None
    reference: str | None = None
    clear: frozenset[str] = frozenset()
