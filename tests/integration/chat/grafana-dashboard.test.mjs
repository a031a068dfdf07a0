// docs/deploy/grafana-parley.json against the metrics contract: every name its queries
// use is a family of src/chat/metrics.c (a histogram's _bucket, _sum and _count series
// mapped to their family), counters and histograms are read through rate() and gauges
// never are, every selector carries the $job / $instance filters, every family has a
// panel, and the model is one Grafana imports anywhere (a Prometheus data source picked
// at import, no fixed uid). No server: it reads the two files.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const DASHBOARD = path.join(ROOT, "docs/deploy/grafana-parley.json");
const METRICS_C = path.join(ROOT, "src/chat/metrics.c");

// The family table of metrics.c: `static const prom_family_t families[] = { ... };`.
function families() {
  const src = fs.readFileSync(METRICS_C, "utf8");
  const table = /families\[\]\s*=\s*\{([\s\S]*?)\n\};/.exec(src);
  assert.ok(table, "src/chat/metrics.c has a families[] table");
  const out = new Map();
  for (const m of table[1].matchAll(/\{\s*"([A-Za-z_:][A-Za-z0-9_:]*)",\s*PROM_(\w+)/g))
    out.set(m[1], m[2].toLowerCase());
  assert.ok(out.size > 0, "families[] lists families");
  return out;
}

const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "by", "without", "on",
  "ignoring", "group_left", "group_right", "inf", "nan"]);

// The metric names a PromQL expression reads: identifiers that are not functions,
// keywords, label names (in selectors or by/without/on/ignoring lists), ranges,
// durations, numbers or dashboard variables.
function metricNames(expr) {
  const e = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\boffset\s+\S+/g, " ");
  const names = new Set();
  for (const m of e.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const before = e[m.index - 1] ?? "";
    if (/[$0-9.]/.test(before)) continue; // $variable, 1e6, 0.5
    if (/^\s*\(/.test(e.slice(m.index + m[0].length))) continue; // a function
    if (KEYWORDS.has(m[0].toLowerCase())) continue;
    names.add(m[0]);
  }
  return [...names];
}

// name → [family, type] through the table, or null.
function familyOf(fams, name) {
  if (fams.has(name)) return [name, fams.get(name)];
  const h = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (h && fams.get(h[1]) === "histogram") return [h[1], "histogram"];
  return null;
}

const dash = JSON.parse(fs.readFileSync(DASHBOARD, "utf8"));
const fams = families();

// Every panel, rows' collapsed children included.
const allPanels = dash.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const targets = allPanels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p, t })));
const vars = dash.templating?.list ?? [];

describe("grafana dashboard (docs/deploy/grafana-parley.json)", () => {
  test("an importable model: schemaVersion 36+, a Prometheus data source chosen by the importer", () => {
    assert.ok(dash.schemaVersion >= 36, `schemaVersion ${dash.schemaVersion}`);
    assert.equal(dash.id, null, "no database id");
    const ds = vars.find((v) => v.type === "datasource");
    assert.ok(ds, "a datasource template variable");
    assert.equal(ds.query, "prometheus");
    const input = (dash.__inputs ?? []).find((i) => i.type === "datasource");
    assert.equal(input?.pluginId, "prometheus", "a Prometheus data source input");
    // No panel, query or variable names a data source of its own.
    const ref = `\${${ds.name}}`;
    for (const p of allPanels.filter((p) => p.type !== "row"))
      assert.equal(p.datasource?.uid, ref, `panel "${p.title}" uses ${ref}`);
    for (const { panel, t } of targets)
      assert.equal(t.datasource?.uid, ref, `a query of "${panel.title}" uses ${ref}`);
    for (const v of vars.filter((v) => v.type === "query"))
      assert.equal(v.datasource?.uid, ref, `variable ${v.name} uses ${ref}`);
  });

  test("job and instance variables come from parley_handshakes_total", () => {
    for (const name of ["job", "instance"]) {
      const v = vars.find((v) => v.name === name);
      assert.ok(v, `a ${name} variable`);
      const q = typeof v.query === "string" ? v.query : v.query?.query;
      assert.match(q, new RegExp(`^label_values\\(parley_handshakes_total\\b.*,\\s*${name}\\)$`));
      assert.ok(v.includeAll && v.multi && v.allValue === ".*", `${name}: multi-value, All = .*`);
    }
  });

  test("rows in order, panels inside the grid without overlapping", () => {
    const rows = dash.panels.filter((p) => p.type === "row").map((p) => p.title);
    assert.deepEqual(rows, ["Connections", "Traffic", "Chat", "Latency", "Redis", "TLS and compression", "Notifications (--notify-url)", "Process"]);
    const boxes = allPanels.map((p) => ({ title: p.title, ...p.gridPos }));
    for (const b of boxes) assert.ok(b.x >= 0 && b.w > 0 && b.x + b.w <= 24, `"${b.title}" fits 24 columns`);
    for (let i = 0; i < boxes.length; i++)
      for (let j = i + 1; j < boxes.length; j++) {
        const [a, b] = [boxes[i], boxes[j]];
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        assert.ok(!overlap, `"${a.title}" and "${b.title}" overlap`);
      }
    const ids = allPanels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, "panel ids are unique");
  });

  test("every metric name in a query or variable is a family of src/chat/metrics.c", () => {
    assert.ok(targets.length > 0);
    const exprs = [
      ...targets.map(({ panel, t }) => [panel.title, t.expr]),
      ...vars.filter((v) => v.type === "query")
        .map((v) => [`variable ${v.name}`, (typeof v.query === "string" ? v.query : v.query.query)
          .replace(/^label_values\((.*),\s*\w+\)$/, "$1")]),
    ];
    const unknown = [];
    for (const [where, expr] of exprs) {
      assert.ok(typeof expr === "string" && expr.trim(), `"${where}" has an expression`);
      const names = metricNames(expr);
      assert.ok(names.length > 0, `"${where}" reads a metric: ${expr}`);
      for (const n of names) if (!familyOf(fams, n)) unknown.push(`${where}: ${n}`);
    }
    assert.deepEqual(unknown, [], "names not in metrics.c's families[]");
  });

  test("counters and histogram buckets through rate(), gauges as they are, quantiles by le", () => {
    for (const { panel, t } of targets) {
      for (const n of metricNames(t.expr)) {
        const f = familyOf(fams, n);
        if (!f) continue; // reported by the test above
        const [fam, type] = f;
        for (const m of t.expr.matchAll(new RegExp(`(?<![A-Za-z0-9_:])${n}(?![A-Za-z0-9_:])`, "g"))) {
          const rated = /\b(rate|irate|increase)\(\s*$/.test(t.expr.slice(0, m.index));
          if (type === "gauge") assert.ok(!rated, `"${panel.title}": gauge ${n} under rate()`);
          else assert.ok(rated, `"${panel.title}": ${type} ${n} read without rate()`);
          if (type === "histogram") assert.equal(n, `${fam}_bucket`, `"${panel.title}": ${n}`);
          // The filters: every selector narrows to the chosen job and instance.
          const sel = /^\{([^}]*)\}/.exec(t.expr.slice(m.index + n.length));
          assert.ok(sel, `"${panel.title}": ${n} has a selector`);
          assert.match(sel[1], /\bjob=~"\$job"/, `"${panel.title}": ${n} filters $job`);
          assert.match(sel[1], /\binstance=~"\$instance"/, `"${panel.title}": ${n} filters $instance`);
        }
      }
      if (/_bucket\b/.test(t.expr))
        assert.match(t.expr, /^histogram_quantile\(0\.\d+,\s*sum by \(le\) \(rate\(\w+_bucket\{/,
          `"${panel.title}": histogram_quantile over sum by (le) of rate(_bucket)`);
    }
  });

  test("every family of /metrics has a panel", () => {
    const used = new Set(targets.flatMap(({ t }) => metricNames(t.expr).map((n) => familyOf(fams, n)?.[0])));
    const missing = [...fams.keys()].filter((f) => !used.has(f));
    assert.deepEqual(missing, [], "families without a panel (add one to docs/deploy/grafana-parley.json)");
  });

  test("the extractor reads names, not labels, functions or variables", () => {
    assert.deepEqual(
      metricNames('histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$job", x="y z"}[$__rate_interval])))'),
      ["a_bucket"]);
    assert.deepEqual(metricNames("sum without (instance) (b) / on (job) group_left (c) d offset 5m * 1e6"), ["b", "d"]);
  });
});
