"""The Grafana dashboard parses as a Grafana dashboard, covers what operators need, and queries only real metrics."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.promql import metric_names, panel_queries, panels, substitute, variable_queries
from tests.deploy.support import load_dashboard, require_tool

DASHBOARD = load_dashboard()
ALL_QUERIES = panel_queries(DASHBOARD) + variable_queries(DASHBOARD)


def test_parses_with_grafanas_dashboard_model() -> None:
    """Decoded by the Grafana Foundation SDK (types generated from Grafana's own dashboard schema)."""
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models import bargauge, gauge, heatmap, prometheus, stat, table, timeseries
    from grafana_foundation_sdk.models import dashboard as grafana

    register_default_plugins()  # panel options and queries are decoded into their plugin's types
    parsed = grafana.Dashboard.from_json(DASHBOARD)
    assert parsed.uid == "oberta" and parsed.title
    assert parsed.templating is not None and parsed.templating.list_val is not None
    assert parsed.panels
    queries = 0
    for panel in parsed.panels:
        if isinstance(panel, grafana.RowPanel):
            continue
        assert isinstance(panel, grafana.Panel), panel
        assert panel.targets, panel.title
        options_type = {
            "timeseries": timeseries.Options,
            "stat": stat.Options,
            "gauge": gauge.Options,
            "bargauge": bargauge.Options,
            "table": table.Options,
            "heatmap": heatmap.Options,
        }[panel.type_val]
        assert isinstance(panel.options, options_type), (panel.title, type(panel.options))
        for target in panel.targets:
            assert isinstance(target, prometheus.Dataquery), (panel.title, type(target))
            assert target.expr
            queries += 1
    assert queries == len(panel_queries(DASHBOARD))


def test_dashboard_structure() -> None:
    assert isinstance(DASHBOARD["schemaVersion"], int) and DASHBOARD["schemaVersion"] >= 36
    all_panels = panels(DASHBOARD)
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in all_panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert grid["h"] > 0 and grid["y"] >= 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "gauge", "bargauge", "table", "heatmap"}, panel["type"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    variables = {variable["name"]: variable for variable in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"model", "instance", "stage"} <= set(variables)


def test_the_provisioned_data_source_is_the_default_choice() -> None:
    provisioning = Path(__file__).resolve().parents[2] / "deploy/grafana/provisioning/datasources/prometheus.yml"
    (source,) = yaml.safe_load(provisioning.read_text())["datasources"]
    current = {variable["name"]: variable for variable in DASHBOARD["templating"]["list"]}["datasource"]["current"]
    assert current["value"] == source["uid"]


def _queries_over(metric: str) -> list[str]:
    return [expr for _, expr in panel_queries(DASHBOARD) if any(name.startswith(metric) for name in metric_names(expr))]


def test_covers_throughput_latency_per_stage_batching_queues_and_errors_per_model() -> None:
    throughput = _queries_over("oberta_requests_total") + _queries_over("oberta_items_total")
    assert any("rate(" in expr for expr in throughput)
    stage_quantiles = _queries_over("oberta_stage_duration_seconds_bucket")
    for quantile in ("0.5", "0.95", "0.99"):
        assert any(f"histogram_quantile({quantile}," in expr and "stage" in expr for expr in stage_quantiles), quantile
    assert any("histogram_quantile" in expr for expr in _queries_over("oberta_request_duration_seconds_bucket"))
    assert _queries_over("oberta_batch_size")
    assert _queries_over("oberta_queue_depth")
    assert _queries_over("oberta_inflight_requests")
    assert any('status!~"2.."' in expr or 'status=~"5.."' in expr for expr in _queries_over("oberta_requests_total"))
    # Per model: every time series panel splits or filters by model.
    for panel in panels(DASHBOARD):
        for target in panel.get("targets", []):
            assert 'model=~"$model"' in target["expr"], (panel["title"], target["expr"])
            if panel["type"] == "timeseries":
                assert "{{model}}" in target["legendFormat"], panel["title"]


@pytest.mark.parametrize("where,expr", ALL_QUERIES, ids=[where for where, _ in ALL_QUERIES])
def test_every_query_names_a_metric_the_server_exports(where: str, expr: str, exported_samples: set[str]) -> None:
    names = metric_names(expr)
    assert names, f"{where}: no metric in {expr!r}"
    missing = names - exported_samples
    assert not missing, f"{where}: {sorted(missing)} not exported by the server (it exports {sorted(exported_samples)})"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel query (Grafana's variables substituted) as a recording rule expression."""
    rules = [
        {"record": f"oberta:dashboard_query_{index}", "expr": substitute(expr)}
        for index, (_, expr) in enumerate(panel_queries(DASHBOARD))
    ]
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_metric_name_extraction() -> None:
    expr = 'histogram_quantile(0.95, sum by (le, model) (rate(oberta_x_bucket{model=~"$model", le!="1"}[5m])))'
    assert metric_names(expr) == {"oberta_x_bucket"}
    assert metric_names('label_values(oberta_ready{model=~"$model"}, instance)') == {"oberta_ready"}
    assert metric_names("sum(a) / sum(b) or vector(0)") == {"a", "b"}
    with pytest.raises(ValueError, match="unknown function"):
        metric_names("made_up(oberta_x)")
