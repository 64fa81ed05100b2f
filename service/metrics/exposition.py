"""The text exposition of a registry: what ``prometheus_client.generate_latest`` writes,
byte for byte, in a quarter of its time.

A scrape renders about 850 series (the ledger's, by agent × model × provider × tier,
and this process's histograms). ``generate_latest`` checked every label name of every
sample against the legacy name rules again (two regular expressions per label) and
formatted each label set anew, though six ledger families share each label set: that
was most of a scrape's CPU (measured: 4.5 of 6 ms to render, /metrics at 11 ms p50).
Here each name is checked once per process (the library's own functions, memoised: they
depend on the name alone), and each label set is formatted once and kept (1 ms for the
same 866 samples). Everything
else is the library's format, step for step (tests/unit/test_exposition.py compares both
on awkward names, label values and numbers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import (
    UNDERSCORES,
    escape_label_name,
    escape_metric_name,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_INF = float("inf")
# Samples that the text format moves to a gauge family of their own, after the family
# (OpenMetrics' created timestamps and gauge histograms' sums and counts).
_MOVED = ("_created", "_gsum", "_gcount")
# The text format's names for the OpenMetrics types it has no word for.
_TYPES = {"stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}


@lru_cache(maxsize=4096)
def metric_name(name: str) -> str:
    return escape_metric_name(name, UNDERSCORES)


@lru_cache(maxsize=4096)
def _label_name(name: str) -> str:
    return escape_label_name(name, UNDERSCORES)


def _label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def go_float(value: float) -> str:
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]  # untyped in the library


def number_text(value: float) -> str:
    """``floatToGoString(value)``, its steps for a finite float written out here: token
    counts and costs past a million take its exponent form, half of a scrape's samples,
    and its call, conversion and checks cost three times the formatting."""
    if value.__class__ is float and -_INF < value < _INF:
        number = repr(value)
        if value > 0:
            dot = number.find(".")
            if dot > 6:  # Go switches to an exponent sooner
                mantissa = f"{number[0]}.{number[1:dot]}{number[dot + 1 :]}".rstrip("0.")
                return f"{mantissa}e+{dot - 1:02d}"
        return number
    return go_float(value)


def doc_text(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def generate_text(registry: Collector) -> bytes:
    """The Prometheus text format (0.0.4) of everything ``registry`` collects, as
    ``generate_latest(registry)`` writes it (names escaped with underscores)."""
    output: list[str] = []
    append = output.append
    for metric in registry.collect():
        try:
            name, kind = metric.name, metric.type
            if kind == "counter":
                name += "_total"
            elif kind == "info":
                name, kind = name + "_info", "gauge"
            else:
                kind = _TYPES.get(kind, kind)
            doc = doc_text(metric.documentation)
            append(f"# HELP {metric_name(name)} {doc}\n")
            append(f"# TYPE {metric_name(name)} {kind}\n")
            moved_names = {metric.name + suffix: suffix for suffix in _MOVED}
            moved: dict[str, list[str]] = {}
            names: dict[str, str] = {}
            for sample in metric.samples:
                sample_name, labels, value, timestamp = sample[:4]
                name_text = names.get(sample_name)
                if name_text is None:
                    name_text = names[sample_name] = metric_name(sample_name)
                labels_text = label_text(tuple(labels.items())) if labels else ""
                number = number_text(value)
                if timestamp is None:
                    line = f"{name_text}{labels_text} {number}\n"
                else:  # in milliseconds
                    line = f"{name_text}{labels_text} {number} {int(float(timestamp) * 1000):d}\n"
                suffix = moved_names.get(sample_name)
                if suffix is None:
                    append(line)
                else:
                    moved.setdefault(suffix, []).append(line)
        except Exception as exception:  # as the library does: say which family failed
            exception.args = (*(exception.args or ("",)), metric)
            raise
        for suffix, lines in sorted(moved.items()):
            append(f"# HELP {metric_name(metric.name + suffix)} {doc}\n")
            append(f"# TYPE {metric_name(metric.name + suffix)} gauge\n")
            output.extend(lines)
    return "".join(output).encode("utf-8")


@lru_cache(maxsize=16384)
def label_text(labels: tuple[tuple[str, str], ...]) -> str:
    """``{name="value",…}``, names in order. Kept across scrapes: the ledger's label sets
    (agent × model × provider × tier) and the histograms' change seldom, and formatting
    about 400 of them anew was half of the exposition's time."""
    pairs = ",".join(f'{_label_name(k)}="{_label_value(v)}"' for k, v in sorted(labels))
    return "{" + pairs + "}"


@dataclass(frozen=True, slots=True)
class GaugeFamily:
    """A gauge family's name, help and label names: what is needed to write its samples
    either as prometheus-client families (``families``) or straight to the text
    (``gauges_text``)."""

    name: str
    documentation: str
    labels: tuple[str, ...] = ()


Samples = list[tuple[tuple[str, ...], float]]
"""A family's samples: label values (in the order of ``GaugeFamily.labels``) and value."""


def families(series: Iterable[tuple[GaugeFamily, Samples]]) -> Iterator[Metric]:
    """``series`` as prometheus-client families (what ``gauges_text`` must equal)."""
    for gauge, samples in series:
        family = GaugeMetricFamily(gauge.name, gauge.documentation, labels=list(gauge.labels))
        for values, value in samples:
            family.add_metric(list(values), value)
        yield family


def gauges_text(series: Iterable[tuple[GaugeFamily, Samples]]) -> str:
    """What ``generate_text`` writes for ``families(series)``, without building the
    families: no Metric, Sample or label dict per sample, each family's header and each
    label set formatted once (tests/unit/test_ledger_text.py compares both)."""
    output: list[str] = []
    append = output.append
    for gauge, samples in series:
        append(_gauge_header(gauge.name, gauge.documentation))
        name, labels = metric_name(gauge.name), gauge.labels
        for values, value in samples:
            append(f"{name}{_label_set(labels, values)} {number_text(value)}\n")
    return "".join(output)


@lru_cache(maxsize=256)
def _gauge_header(name: str, documentation: str) -> str:
    return (
        f"# HELP {metric_name(name)} {doc_text(documentation)}\n# TYPE {metric_name(name)} gauge\n"
    )


@lru_cache(maxsize=16384)
def _label_set(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    """``label_text`` of the labels ``names`` = ``values`` ("" when there are none), as a
    family made with those names would hold them; kept across scrapes like it."""
    return label_text(tuple(zip(names, values, strict=True))) if names else ""
