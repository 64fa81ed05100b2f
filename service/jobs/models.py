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
    """Free text printed on the job's invoices (who to address), whoever owns the job."""
    title: str | None
    reference: str | None
    updated_at: datetime | None
    customer_id: str | None = None
    """The customer the job belongs to (its rate plan prices the job): set by the first
    event naming one, by ``X-LUC-Customer`` on the proxy, or by a PATCH."""


@dataclass(frozen=True, slots=True)
class JobChanges:
    """A PATCH: ``None`` leaves a field as it is; ``clear`` names fields set to null."""

    status: str | None = None
    customer: str | None = None
    title: str | None = None
    reference: str | None = None
    customer_id: str | None = None
    clear: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class JobUpdate:
    """A job after a PATCH, and whether that PATCH gave it another customer."""

    job: JobInfo
    customer_changed: bool = False
    """The hook for re-pricing: the job's entries are the new customer's to price."""
    previous_customer_id: str | None = None
