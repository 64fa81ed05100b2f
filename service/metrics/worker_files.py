"""Every worker's series, summed from prometheus-client's multiprocess files, as text.

Under ``luc serve --workers N`` each worker writes its counters, gauges and histograms to
files of its own (``PROMETHEUS_MULTIPROC_DIR``); a scrape sums them. prometheus-client's
``MultiProcessCollector`` parses every entry's key (a JSON document) again at every
scrape and builds a ``Sample`` per entry twice over: with two workers and the HTTP
histogram's label sets (route × method × status, 17 samples each) that was most of a
scrape's time, and it grows with the routes a worker has answered, not with anything a
scrape needs to learn again. Here a file's entries are parsed once: entries are only ever
appended to a file and a key never moves, so a scrape reads the values at the positions it
already knows and parses only the entries added since.

The sums, modes and order are the library's, step for step (``MultiProcessCollector``
merged with ``accumulate=True``), and the text is what ``exposition.generate_text`` writes
for it: tests/unit/test_worker_files.py compares both on files written by real processes.
"""

from __future__ import annotations

import glob
import json
import mmap
import os
import struct
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache

from service.metrics.exposition import doc_text, go_float, label_text, metric_name, number_text

_USED = struct.Struct("i")
_VALUE = struct.Struct("dd")
_FIRST_ENTRY = 8  # the used size (4 bytes) and padding (4)
# Gauge modes (the file's second part) that keep each worker's sample, labelled by pid.
_PER_PID = ("all", "liveall")

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class _Entry:
    """One key of a file, parsed: what the library derives from it at every scrape."""

    family: str
    documentation: str
    sample: str
    labels: Labels  # sorted, without ``le``; with ``pid`` for _PER_PID
    le: float | None  # a histogram bucket's bound


@dataclass(slots=True)
class _File:
    kind: str  # counter, gauge, histogram, summary
    mode: str  # a gauge's multiprocess mode, else ""
    identity: tuple[int, int]  # device and inode: a new file under the same name is read anew
    parsed: int = _FIRST_ENTRY  # where the next unparsed entry starts
    entries: list[tuple[int, _Entry]] = field(default_factory=list)  # value offset, key


@dataclass(slots=True)
class _Family:
    kind: str
    documentation: str
    # label set -> sample (name, labels) -> value, in first-seen order, as the library keeps
    samples: defaultdict[Labels, dict[tuple[str, Labels], float]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    stamps: dict[tuple[Labels, str], float] = field(default_factory=dict)
    buckets: defaultdict[Labels, defaultdict[float, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )


class WorkerFiles:
    """Reads one multiprocess folder, scrape after scrape, keeping each file's parsed keys."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._files: dict[str, _File] = {}

    def text(self) -> str:
        """The text format of every worker's series, summed as the library sums them."""
        families: dict[str, _Family] = {}
        seen: set[str] = set()
        for path in glob.glob(os.path.join(self._path, "*.db")):
            read = self._read(path)
            if read is None:
                continue
            known, data = read
            seen.add(path)
            _merge(known, data, families)
        for gone in self._files.keys() - seen:
            del self._files[gone]
        return _text(families)

    def _read(self, path: str) -> tuple[_File, bytes] | None:
        name = os.path.basename(path)
        parts = name.split("_")
        try:
            with open(path, "rb") as file:
                stat = os.fstat(file.fileno())
                # The file is preallocated: read up to its used size only, as the library.
                data = file.read(mmap.PAGESIZE)
                used = _USED.unpack_from(data, 0)[0] if len(data) >= _FIRST_ENTRY else 0
                if used > len(data):
                    data += file.read(used - len(data))
        except FileNotFoundError:
            # As the library: a live gauge's file may go between the listing and now (its
            # process was marked dead); any other file vanishing is an error.
            if parts[0] == "gauge" and parts[1].startswith("live"):
                return None
            raise
        identity = (stat.st_dev, stat.st_ino)
        known = self._files.get(path)
        if known is None or known.identity != identity or used < known.parsed:
            kind = parts[0]
            known = _File(kind, parts[1] if kind == "gauge" else "", identity)
            self._files[path] = known
        if used > known.parsed:
            _parse(known, data, used, parts[2][:-3] if known.kind == "gauge" else "")
        return known, data


def _parse(known: _File, data: bytes, used: int, pid: str) -> None:
    """Appends the entries between ``known.parsed`` and ``used`` (the library's layout: a
    key's length, the key in UTF-8 padded to 8 bytes, then its value and timestamp)."""
    position = known.parsed
    while position < used:
        length = _USED.unpack_from(data, position)[0]
        if length + position > used:
            raise RuntimeError("Read beyond file size detected, file is corrupted.")
        key = data[position + 4 : position + 4 + length].decode("utf-8")
        position += 4 + length + (8 - (length + 4) % 8)
        known.entries.append((position, _entry(key, known, pid)))
        position += 16
    known.parsed = position


def _entry(key: str, known: _File, pid: str) -> _Entry:
    family, sample, labels, documentation = json.loads(key)
    pairs = tuple(sorted(labels.items()))
    le = None
    if known.kind == "histogram" and "le" in labels:
        le = float(labels["le"])
        pairs = tuple(pair for pair in pairs if pair[0] != "le")
    elif known.kind == "gauge" and known.mode in _PER_PID:
        pairs = (*pairs, ("pid", pid))
    return _Entry(family, documentation, sample, pairs, le)


def _merge(known: _File, data: bytes, families: dict[str, _Family]) -> None:
    """Adds one file's values to ``families`` as ``MultiProcessCollector`` accumulates."""
    unpack = _VALUE.unpack_from
    kind, mode = known.kind, known.mode
    for position, entry in known.entries:
        value, stamp = unpack(data, position)
        family = families.get(entry.family)
        if family is None:
            family = families[entry.family] = _Family(kind, entry.documentation)
        labels, key = entry.labels, (entry.sample, entry.labels)
        if kind == "gauge":
            if mode in ("min", "livemin", "max", "livemax"):
                current = family.samples[labels].setdefault(key, value)
                if (value < current) if mode.endswith("min") else (value > current):
                    family.samples[labels][key] = value
            elif mode in ("sum", "livesum"):
                group = family.samples[labels]
                group[key] = group.get(key, 0.0) + value
            elif mode in ("mostrecent", "livemostrecent"):
                stamp = float(stamp or 0)
                if family.stamps.get((labels, entry.sample), 0.0) < stamp:
                    family.samples[labels][key] = value
                    family.stamps[(labels, entry.sample)] = stamp
            else:  # all, liveall: one sample per worker
                family.samples[labels][key] = value
        elif entry.le is not None:
            family.buckets[labels][entry.le] += value
        else:  # counters, summaries, a histogram's _sum
            group = family.samples[labels]
            group[key] = group.get(key, 0.0) + value


def _text(families: dict[str, _Family]) -> str:
    output: list[str] = []
    append = output.append
    for name, family in families.items():
        for labels, bounds in family.buckets.items():
            group, count = family.samples[labels], 0.0
            for bound, value in sorted(bounds.items()):
                count += value
                group[(name + "_bucket", (*labels, ("le", _bound(bound))))] = count
            group[(name + "_count", labels)] = count
        header = name + "_total" if family.kind == "counter" else name
        append(f"# HELP {metric_name(header)} {doc_text(family.documentation)}\n")
        append(f"# TYPE {metric_name(header)} {family.kind}\n")
        for group in family.samples.values():
            for key, value in group.items():
                append(f"{_prefix(key)}{number_text(value)}\n")
    return "".join(output)


# Kept across scrapes, as exposition keeps its label sets: the same few hundred samples
# come back at every scrape.
@lru_cache(maxsize=16384)
def _prefix(key: tuple[str, Labels]) -> str:
    sample, labels = key
    return f"{metric_name(sample)}{label_text(labels) if labels else ''} "


@lru_cache(maxsize=256)
def _bound(bound: float) -> str:
    return go_float(bound)
