"""Monitoring in the compose pack: Prometheus, Grafana and the alert rules use what the code exports.

Prometheus scrapes every PM service that serves /metrics and loads the alert rules; Grafana is
provisioned with the Prometheus datasource and the dashboard. The dashboard and the alert rules may
only use metrics the code exports, with the labels it gives them (collected from the sources'
prometheus_client constructors, and cross-checked against the live registry), and `promtool` checks
the rules and the Prometheus config when it is installed.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import yaml

if TYPE_CHECKING:
    from tests.deploy.conftest import Compose

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
PROMETHEUS_CONFIG = COMPOSE_DIR / "prometheus" / "prometheus.yml"
ALERTS_FILE = COMPOSE_DIR / "prometheus" / "alerts.yml"
DASHBOARD_FILE = COMPOSE_DIR / "grafana" / "dashboards" / "pm.json"
GRAFANA_PROVISIONING = COMPOSE_DIR / "grafana" / "provisioning"

# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = {"up": frozenset({"job", "instance"})}
TARGET_LABELS = frozenset({"job", "instance"})


# ---------------------------------------------------------------------------------------------------
# Prometheus and Grafana
# ---------------------------------------------------------------------------------------------------


@cache
def prometheus_config() -> dict[str, Any]:
    data = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert isinstance(data, dict)
    return data


def test_prometheus_scrapes_every_pm_service_and_loads_the_rules(compose: Compose) -> None:
    targets: dict[str, str] = {}
    for job in prometheus_config()["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                targets[target] = job["job_name"]
    missing = []
    for name, process in compose.pm_services().items():
        if not process.has_metrics:
            continue
        port = compose.port_of(name)
        if f"{name}:{port}" not in targets:
            missing.append(f"{name}:{port}")
    assert not missing, f"PM services Prometheus does not scrape: {missing}"
    for target in targets:
        host = target.rsplit(":", 1)[0]
        assert host in compose.services or host == "127.0.0.1", f"scrape target {target} names no service"
    # The rules are loaded, and mounted where the config points.
    prom = compose.services["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"] if str(v).startswith("./")}
    config_in_container = Path(next(t for t, s in mounts.items() if s.endswith("prometheus.yml")))
    for rule_file in prometheus_config()["rule_files"]:
        in_container = config_in_container.parent / rule_file
        assert str(in_container) in mounts, f"{in_container} is not mounted"
        assert (COMPOSE_DIR / mounts[str(in_container)]).resolve() == ALERTS_FILE.resolve()


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard(compose: Compose) -> None:
    grafana = compose.services["grafana"]
    mounts = {
        v.split(":")[1]: (COMPOSE_DIR / v.split(":")[0]).resolve()
        for v in grafana["volumes"]
        if str(v).startswith("./")
    }
    assert mounts.get("/etc/grafana/provisioning") == GRAFANA_PROVISIONING.resolve()
    providers = [
        p
        for f in sorted((GRAFANA_PROVISIONING / "dashboards").glob("*.y*ml"))
        for p in yaml.safe_load(f.read_text())["providers"]
    ]
    assert providers, "no dashboard provider"
    dashboard_dirs = {p["options"]["path"] for p in providers}
    assert any(mounts.get(d) == DASHBOARD_FILE.parent.resolve() for d in dashboard_dirs), (
        dashboard_dirs,
        mounts,
    )
    datasources = [
        d
        for f in sorted((GRAFANA_PROVISIONING / "datasources").glob("*.y*ml"))
        for d in yaml.safe_load(f.read_text())["datasources"]
    ]
    uids = {d["uid"] for d in datasources if d["type"] == "prometheus"}
    prometheus = urlsplit(next(d["url"] for d in datasources if d["type"] == "prometheus"))
    assert prometheus.hostname == "prometheus" and prometheus.hostname in compose.services
    used = {ds["uid"] for ds in _datasource_refs(json.loads(DASHBOARD_FILE.read_text()))}
    assert used and used <= uids, f"the dashboard uses datasources {used}, provisioned: {uids}"


def _datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict):
            yield ds
        for value in node.values():
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _datasource_refs(value)


# ---------------------------------------------------------------------------------------------------
# Metrics the code exports
# ---------------------------------------------------------------------------------------------------


_KINDS = {"Counter", "Gauge", "Histogram", "Summary"}


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str
    labels: frozenset[str]
    module: str


def _literal_strings(node: ast.AST | None) -> list[str] | None:
    if isinstance(node, (ast.List, ast.Tuple)) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return [str(e.value) for e in node.elts if isinstance(e, ast.Constant)]
    return None


@cache
def exported_metrics() -> dict[str, Metric]:
    """Every prometheus_client metric constructed in the fleet's sources, by its base name."""
    found: dict[str, Metric] = {}
    roots = [ROOT / "shared" / "src", *sorted(ROOT.glob("services/*/src"))]
    for root in roots:
        for file in sorted(root.rglob("*.py")):
            tree = ast.parse(file.read_text(), str(file))
            imported = {
                alias.asname or alias.name
                for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client"
                for alias in node.names
                if alias.name in _KINDS
            }
            if not imported:
                continue
            module = ".".join(file.relative_to(root).with_suffix("").parts)
            for node in ast.walk(tree):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in imported
                ):
                    continue
                if not (
                    node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    continue
                labels = _literal_strings(node.args[2] if len(node.args) > 2 else None)
                for kw in node.keywords:
                    if kw.arg == "labelnames":
                        labels = _literal_strings(kw.value)
                name = node.args[0].value
                kind = node.func.id
                if kind == "Counter":
                    name = name.removesuffix("_total")
                found[name] = Metric(name, kind, frozenset(labels or ()), module)
    return found


@cache
def series_names() -> dict[str, frozenset[str]]:
    """Every series name the fleet exposes (`_total`, `_bucket`, …) → the labels it carries."""
    names: dict[str, frozenset[str]] = dict(PROMETHEUS_SERIES)
    for metric in exported_metrics().values():
        labels = metric.labels | TARGET_LABELS
        suffixes = {
            "Counter": ("_total", "_created"),
            "Gauge": ("",),
            "Histogram": ("_bucket", "_sum", "_count", "_created"),
            "Summary": ("", "_sum", "_count", "_created"),
        }[metric.kind]
        for suffix in suffixes:
            names[metric.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def test_the_metric_inventory_matches_the_live_registry() -> None:
    """The source scan above must agree with what prometheus_client really registers."""
    from prometheus_client import REGISTRY

    metrics = exported_metrics()
    assert {
        "pm_stream_group_lag",
        "pm_stream_claim_deleted",
        "pm_intent_moves",
        "pm_ledger_request_events",
    } <= set(metrics)
    for module in sorted({m.module for m in metrics.values()}):
        importlib.import_module(module)
    registered = {family.name: family for family in REGISTRY.collect()}
    for metric in metrics.values():
        family = registered.get(metric.name)
        assert family is not None, f"{metric.name} ({metric.module}) is not registered"
        kind = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary"}[
            metric.kind
        ]
        assert family.type == kind, (metric.name, family.type)


_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan",
}  # fmt: skip
_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio",
}  # fmt: skip
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"\s*,?')


@dataclass
class Query:
    selectors: list[tuple[str, dict[str, str]]]
    grouping: set[str]


def parse_promql(expr: str) -> Query:
    """The series selectors and grouping labels of a PromQL expression (enough to check names)."""
    expr = re.sub(r"\$__\w+|\$\{[^}]*\}", "5m", expr)
    query = Query([], set())
    i, n = 0, len(expr)

    def block(start: int, open_: str, close: str) -> int:
        depth, j = 0, start
        while j < n:
            c = expr[j]
            if c in "\"'`":
                j = expr.index(c, j + 1) if c == "`" else _string_end(expr, j)
            elif c == open_:
                depth += 1
            elif c == close:
                depth -= 1
                if depth == 0:
                    return j
            j += 1
        raise ValueError(f"unbalanced {open_} in {expr!r}")

    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
        elif c in "\"'":
            i = _string_end(expr, i) + 1
        elif c == "[":
            i = expr.index("]", i) + 1
        elif c == "{":  # a selector with no metric name
            end = block(i, "{", "}")
            query.selectors.append(("", _matchers(expr[i + 1 : end])))
            i = end + 1
        elif c.isalpha() or c in "_:":
            m = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*").match(expr, i)
            assert m is not None
            word, i = m.group(0), m.end()
            j = i
            while j < n and expr[j].isspace():
                j += 1
            if word.lower() in _GROUPING:
                if j < n and expr[j] == "(":
                    end = block(j, "(", ")")
                    query.grouping |= {w.strip() for w in expr[j + 1 : end].split(",") if w.strip()}
                    i = end + 1
            elif word.lower() in _KEYWORDS or word in _AGGREGATIONS:
                continue
            elif j < n and expr[j] == "(":
                continue  # a function or aggregation
            else:
                labels: dict[str, str] = {}
                if j < n and expr[j] == "{":
                    end = block(j, "{", "}")
                    labels = _matchers(expr[j + 1 : end])
                    i = end + 1
                query.selectors.append((word, labels))
        else:
            i += 1
    return query


def _string_end(expr: str, start: int) -> int:
    quote, j = expr[start], start + 1
    while expr[j] != quote:
        j += 2 if expr[j] == "\\" else 1
    return j


def _matchers(text: str) -> dict[str, str]:
    labels, pos = {}, 0
    while pos < len(text.strip()):
        m = _MATCHER.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read label matchers {text!r}")
        labels[m.group(1)] = m.group(3)
        pos = m.end()
    return labels


def problems_in(expr: str) -> list[str]:
    """Metrics or labels an expression uses that the fleet does not export."""
    known = series_names()
    query = parse_promql(expr)
    problems = []
    used_labels: set[str] = set()
    if not query.selectors:
        problems.append(f"no metric in {expr!r}")
    for name, matchers in query.selectors:
        if name not in known:
            problems.append(f"unknown metric {name or '{…}'!r} in {expr!r}")
            continue
        used_labels |= known[name]
        for label in set(matchers) - known[name] - {"__name__"}:
            problems.append(f"{name} has no label {label!r} (it has {sorted(known[name])}) in {expr!r}")
    for label in query.grouping - used_labels - {"le"}:
        if used_labels:
            problems.append(f"grouping by {label!r}, which none of its metrics has, in {expr!r}")
    return problems


def unknown_jobs(expr: str) -> list[str]:
    """`job` values an expression selects that no Prometheus scrape job has."""
    jobs = {job["job_name"] for job in prometheus_config()["scrape_configs"]}
    unknown = []
    for _, matchers in parse_promql(expr).selectors:
        value = matchers.get("job")
        if value is not None and "$" not in value:
            unknown += [v for v in value.split("|") if v not in jobs]
    return unknown


def test_the_promql_reader_finds_metrics_and_labels() -> None:
    q = parse_promql(
        "sum by (stream, le) (rate(pm_stream_e2e_latency_seconds_bucket"
        '{stream=~"$stream", group!="x"}[$__rate_interval]))'
        ' / on() group_left sum(pm_stream_length) or vector(0) unless absent(up{job="a"} == 1)'
    )
    assert q.selectors == [
        ("pm_stream_e2e_latency_seconds_bucket", {"stream": "$stream", "group": "x"}),
        ("pm_stream_length", {}),
        ("up", {"job": "a"}),
    ]
    assert q.grouping == {"stream", "le"}
    assert problems_in("rate(pm_stream_lag_total[5m])")
    assert problems_in('pm_stream_group_lag{partition="0"}')
    assert problems_in("sum by (psp) (pm_stream_group_lag)")
    assert not problems_in("sum by (stream, group) (pm_stream_group_lag)")


# ---------------------------------------------------------------------------------------------------
# The dashboard
# ---------------------------------------------------------------------------------------------------


def _panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def test_the_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["uid"] and dashboard["title"]
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", text or "")
        if m:
            exprs.append(m.group(1))
            assert m.group(2) in series_names().get(m.group(1).split("{")[0], frozenset()), text
    assert len(exprs) >= 20
    problems = [p for e in exprs for p in problems_in(e)]
    problems += [f"no scrape job {job!r} in {e!r}" for e in exprs for job in unknown_jobs(e)]
    assert not problems, "\n".join(problems)
    # What the issue asks the dashboard to show.
    used = {name for e in exprs for name, _ in parse_promql(e).selectors}
    wanted = {
        "pm_stream_length", "pm_stream_group_lag", "pm_stream_group_pending",
        "pm_stream_oldest_pending_age_seconds",
        "pm_stream_dlq_length", "pm_intent_moves_total", "pm_stream_e2e_latency_seconds_bucket",
        "pm_ledger_request_events_bucket", "pm_psp_call_seconds_bucket", "pm_webhook_callbacks_total",
        "pm_reconciliation_alerts_total",
    }  # fmt: skip
    assert wanted <= used, f"missing from the dashboard: {sorted(wanted - used)}"
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


# ---------------------------------------------------------------------------------------------------
# The alert rules
# ---------------------------------------------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS_FILE.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def test_alert_rules_are_complete_and_use_exported_metrics() -> None:
    rules = _rules()
    names = [r.get("alert") for r in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    problems = []
    for rule in rules:
        name = rule.get("alert")
        if not name:
            problems.append(f"a rule with no alert name: {rule}")
            continue
        for field in ("expr", "for"):
            if field not in rule:
                problems.append(f"{name}: no {field}")
        if "for" in rule and not _DURATION.match(str(rule["for"])):
            problems.append(f"{name}: for {rule['for']!r} is not a duration")
        if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            problems.append(f"{name}: labels.severity must be critical, warning or info")
        annotations = rule.get("annotations", {})
        for field in ("summary", "description"):
            if not str(annotations.get(field, "")).strip():
                problems.append(f"{name}: no annotations.{field}")
        problems += [f"{name}: {p}" for p in problems_in(str(rule.get("expr", "")))]
        problems += [f"{name}: no scrape job {job!r}" for job in unknown_jobs(str(rule.get("expr", "")))]
    assert not problems, "\n".join(problems)


def test_alert_rules_cover_what_the_operators_need() -> None:
    used = {name for rule in _rules() for name, _ in parse_promql(rule["expr"]).selectors}
    for metric, why in {
        "pm_stream_dlq_length": "DLQ growing",
        "pm_stream_claim_deleted_total": "entries lost to trimming",
        "pm_stream_oldest_pending_age_seconds": "lag time over SLO",
        "pm_stream_e2e_latency_seconds_bucket": "lag time over SLO",
        "pm_intent_moves_total": "intents stuck past their timeout",
        "pm_intents_resume_given_up_total": "intents stuck past their timeout",
        "pm_ledger_writer_active": "ledger-writer without a lease holder",
        "pm_reconciliation_alerts_total": "reconciliation alerts raised",
        "pm_stream_dlq_total": "PSP results dead-lettered",
        "pm_fx_liquidity_available": "FX liquidity running low",
        "pm_reconciliation_alerts_unresolved": "ledger, PostgreSQL and PSPs disagree",
        "pm_reconciler_check_lag_seconds_bucket": "continuous check behind pm:events",
        "pm_reconciler_sweep_last_success_timestamp_seconds": "sweeps not running",
    }.items():
        assert metric in used, f"no alert rule uses {metric} ({why})"


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian: `apt-get install prometheus` ships it; or a Prometheus "
    "release's promtool binary on PATH)",
)
def test_promtool_accepts_the_rules_and_the_config() -> None:
    assert PROMTOOL is not None
    for args in (["check", "rules", str(ALERTS_FILE)], ["check", "config", str(PROMETHEUS_CONFIG)]):
        done = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
