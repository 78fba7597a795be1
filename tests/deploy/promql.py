"""Just enough PromQL for the tests: the queries of a Grafana dashboard and the metric names they read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# Functions, aggregations and keywords the dashboard may use; any other identifier outside label matchers,
# groupings and ranges is taken for a metric name.
KEYWORDS = frozenset(
    {
        "sum", "min", "max", "avg", "count", "stddev", "stdvar", "group", "topk", "bottomk", "quantile", "count_values",
        "rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear", "resets", "changes",
        "histogram_quantile", "histogram_count", "histogram_sum", "histogram_fraction",
        "abs", "ceil", "floor", "round", "clamp", "clamp_min", "clamp_max", "sqrt", "exp", "ln",
        "log2", "log10", "vector", "scalar",
        "absent", "absent_over_time", "sum_over_time", "avg_over_time", "min_over_time", "max_over_time",
        "count_over_time",
        "last_over_time", "quantile_over_time", "label_replace", "label_join", "time", "timestamp", "sort", "sort_desc",
        "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    }
)
GRAFANA_VARIABLES = {
    "$__rate_interval": "30s",
    "$__interval": "15s",
    "$__range": "5m",
    "$model": ".+",
    "$instance": ".+",
    "$stage": ".+",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w.$])[A-Za-z_:][\w:]*")


def substitute(expr: str) -> str:
    """The expression with Grafana's variables replaced by values Prometheus accepts (all models, all stages)."""
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana label_values(metric, label) query) reads."""
    text = substitute(expr).strip()
    label_values = re.fullmatch(r"label_values\((.*),\s*\w+\s*\)", text, flags=re.DOTALL)
    if label_values:
        text = label_values.group(1)
    text = _STRING.sub('""', text)
    text = _MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group(0)
        if word in KEYWORDS:
            continue
        if text[match.end() :].lstrip().startswith("("):
            raise ValueError(f"unknown function {word!r} in {expr!r}: add it to KEYWORDS if it is PromQL")
        names.add(word)
    return names


def _walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels", []))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside rows included."""
    return list(_walk_panels(dashboard.get("panels", [])))


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every Prometheus query of every panel."""
    return [
        (panel.get("title", ""), target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def variable_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(variable name, query) for every query variable of the dashboard."""
    found = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        found.append((variable["name"], query["query"] if isinstance(query, dict) else query))
    return found
