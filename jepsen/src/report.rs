//! The run report: `summary.json` for machines and a self-contained `report.html` for people
//! (inline CSS and SVG charts, no external assets, so it can be archived or mailed as is).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::checker::Analysis;
use crate::history::{Body, NemesisAction, Op, OpType, Process};

/// What was run, for the report and for repeating it.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RunInfo {
    /// "rill" or "kafka".
    pub system: String,
    pub seed: u64,
    pub nodes: usize,
    pub duration_s: f64,
    pub nemeses: Vec<String>,
    /// Free-form settings of the run (keys, producers, idempotence, sub-via...).
    pub workload: Value,
    /// The exact command line that repeats the run.
    pub rerun: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub notes: Vec<String>,
}

/// Writes `dir/summary.json` and `dir/report.html` (creating `dir`).
pub fn write(dir: &Path, info: &RunInfo, ops: &[Op], analysis: &Analysis) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let perf = Perf::from_ops(ops);
    let summary = json!({"run": info, "analysis": analysis, "perf": perf.summary()});
    let mut text = serde_json::to_vec_pretty(&summary).map_err(io::Error::other)?;
    text.push(b'\n');
    std::fs::write(dir.join("summary.json"), text)?;
    std::fs::write(dir.join("report.html"), html(info, analysis, &perf)?)
}

/// A nemesis fault in force from `start_s` to `end_s` (seconds since the run started).
#[derive(Clone, Debug, PartialEq)]
struct Window {
    name: String,
    targets: Vec<String>,
    start_s: f64,
    end_s: f64,
    /// False when no matching stop was recorded (the window runs to the end).
    stopped: bool,
}

/// Per-second series and totals derived from the history.
struct Perf {
    /// Seconds covered (at least 1).
    span_s: f64,
    /// Per second, by completion time.
    sends_ok: Vec<u32>,
    sends_fail: Vec<u32>,
    sends_info: Vec<u32>,
    polls_ok: Vec<u32>,
    /// Latency (ms) of each ok send, by the second it completed in.
    send_latency_ms: Vec<Vec<f64>>,
    windows: Vec<Window>,
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

impl Perf {
    fn from_ops(ops: &[Op]) -> Perf {
        let last_ns = ops.iter().map(|o| o.time_ns).max().unwrap_or(0);
        let buckets = (last_ns / 1_000_000_000 + 1) as usize;
        let mut p = Perf {
            span_s: secs(last_ns).max(1.0),
            sends_ok: vec![0; buckets],
            sends_fail: vec![0; buckets],
            sends_info: vec![0; buckets],
            polls_ok: vec![0; buckets],
            send_latency_ms: vec![Vec::new(); buckets],
            windows: Vec::new(),
        };
        let mut invoked: HashMap<Process, u64> = HashMap::new();
        // Per nemesis name: (start time, targets, time its stop was invoked).
        let mut open: BTreeMap<String, (u64, Vec<String>, Option<u64>)> = BTreeMap::new();
        for op in ops {
            let b = (op.time_ns / 1_000_000_000) as usize;
            match (&op.body, op.kind) {
                (Body::Send { .. }, OpType::Invoke) => {
                    invoked.insert(op.process, op.time_ns);
                }
                (Body::Send { .. }, kind) => {
                    let started = invoked.remove(&op.process);
                    match kind {
                        OpType::Ok => {
                            p.sends_ok[b] += 1;
                            if let Some(t0) = started {
                                p.send_latency_ms[b].push(op.time_ns.saturating_sub(t0) as f64 / 1e6);
                            }
                        }
                        OpType::Fail => p.sends_fail[b] += 1,
                        _ => p.sends_info[b] += 1,
                    }
                }
                (Body::Poll { .. }, OpType::Ok) => p.polls_ok[b] += 1,
                (Body::Nemesis { name, action: NemesisAction::Start, targets }, _) => {
                    open.entry(name.clone()).or_insert((op.time_ns, targets.clone(), None));
                }
                (Body::Nemesis { name, action: NemesisAction::Stop, .. }, kind) => {
                    let Some(w) = open.get_mut(name) else { continue };
                    // The fault lasts until the heal is reported done.
                    if kind == OpType::Invoke {
                        w.2 = Some(op.time_ns);
                        continue;
                    }
                    if let Some((start, targets, _)) = open.remove(name) {
                        p.windows.push(Window {
                            name: name.clone(),
                            targets,
                            start_s: secs(start),
                            end_s: secs(op.time_ns),
                            stopped: true,
                        });
                    }
                }
                _ => {}
            }
        }
        for (name, (start, targets, stop_invoked)) in open {
            p.windows.push(Window {
                name,
                targets,
                start_s: secs(start),
                end_s: stop_invoked.map_or(p.span_s, secs),
                stopped: stop_invoked.is_some(),
            });
        }
        p.windows.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        p
    }

    fn summary(&self) -> Value {
        let total = |v: &[u32]| v.iter().map(|&n| u64::from(n)).sum::<u64>();
        let mut all: Vec<f64> = self.send_latency_ms.iter().flatten().copied().collect();
        all.sort_by(f64::total_cmp);
        json!({
            "span_s": self.span_s,
            "ok_sends_per_s": total(&self.sends_ok) as f64 / self.span_s,
            "ok_polls_per_s": total(&self.polls_ok) as f64 / self.span_s,
            "sends_ok": total(&self.sends_ok),
            "sends_fail": total(&self.sends_fail),
            "sends_info": total(&self.sends_info),
            "send_latency_ms": {
                "count": all.len(),
                "p50": percentile(&all, 0.50),
                "p99": percentile(&all, 0.99),
                "max": all.last(),
            },
            "nemesis_windows": self.windows.iter().map(|w| json!({
                "name": w.name, "targets": w.targets, "start_s": w.start_s, "end_s": w.end_s, "stopped": w.stopped,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn plot_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("rendering a chart: {e}"))
}

const WINDOW_COLORS: [RGBColor; 6] = [
    RGBColor(230, 85, 13),
    RGBColor(49, 130, 189),
    RGBColor(117, 107, 177),
    RGBColor(49, 163, 84),
    RGBColor(214, 39, 40),
    RGBColor(140, 86, 75),
];

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One line of a chart: legend name, color, points.
type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

/// Renders a line chart over the run's time axis, with the nemesis windows shaded behind the
/// lines and labelled at the top, into an SVG string.
fn line_chart(title: &str, y_desc: &str, perf: &Perf, series: &[Series]) -> io::Result<String> {
    let y_max = series.iter().flat_map(|s| s.2.iter().map(|p| p.1)).fold(0.0, f64::max).max(1.0) * 1.2;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..perf.span_s, 0.0..y_max)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            // One light line between bold ones keeps the grid readable and the SVG small.
            .max_light_lines(1)
            .bold_line_style(BLACK.mix(0.15))
            .light_line_style(BLACK.mix(0.05))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .x_desc("time (s)")
            .y_desc(y_desc)
            .draw()
            .map_err(plot_err)?;
        shade_windows(&mut chart, &perf.windows, y_max)?;
        for (name, color, points) in series {
            let color = *color;
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                .map_err(plot_err)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

fn shade_windows(chart: &mut Chart<'_, '_>, windows: &[Window], y_max: f64) -> io::Result<()> {
    let mut names: Vec<&str> = windows.iter().map(|w| w.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for w in windows {
        // One color and one label row per nemesis name, so overlapping faults stay legible.
        let row = names.iter().position(|n| *n == w.name).unwrap_or(0);
        let color = WINDOW_COLORS[row % WINDOW_COLORS.len()];
        let rect = Rectangle::new([(w.start_s, 0.0), (w.end_s, y_max)], color.mix(0.13).filled());
        chart.draw_series(std::iter::once(rect)).map_err(plot_err)?;
        let label_y = y_max * (0.97 - 0.07 * row as f64);
        let label = Text::new(w.name.clone(), (w.start_s, label_y), ("sans-serif", 15).into_font().color(&color));
        chart.draw_series(std::iter::once(label)).map_err(plot_err)?;
    }
    Ok(())
}

fn throughput_chart(perf: &Perf) -> io::Result<String> {
    let per_s = |v: &[u32]| v.iter().enumerate().map(|(i, &n)| (i as f64 + 0.5, f64::from(n))).collect::<Vec<_>>();
    let series = [
        ("ok sends/s", RGBColor(44, 160, 44), per_s(&perf.sends_ok)),
        ("fail sends/s", RGBColor(214, 39, 40), per_s(&perf.sends_fail)),
        ("info sends/s", RGBColor(255, 127, 14), per_s(&perf.sends_info)),
        ("ok polls/s", RGBColor(31, 119, 180), per_s(&perf.polls_ok)),
    ];
    line_chart("Throughput", "operations per second", perf, &series)
}

fn latency_chart(perf: &Perf) -> io::Result<String> {
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for (i, second) in perf.send_latency_ms.iter().enumerate() {
        let mut sorted = second.clone();
        sorted.sort_by(f64::total_cmp);
        let t = i as f64 + 0.5;
        if let (Some(a), Some(b)) = (percentile(&sorted, 0.5), percentile(&sorted, 0.99)) {
            p50.push((t, a));
            p99.push((t, b));
        }
    }
    let series = [("p50", RGBColor(31, 119, 180), p50), ("p99", RGBColor(214, 39, 40), p99)];
    line_chart("Latency of acknowledged sends", "ms", perf, &series)
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.verdict{padding:.8em 1em;border-radius:6px;font-size:1.2em;font-weight:bold}
.valid{background:#e3f4e3;color:#1a6b1a}.invalid{background:#fbe3e3;color:#9b1c1c}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.forbidden{color:#9b1c1c;font-weight:bold}.allowed{color:#555}
pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:.85em;white-space:pre-wrap}
.chart svg{max-width:100%;height:auto}";

/// Examples shown per anomaly kind in the HTML (summary.json has all the checker kept).
const HTML_EXAMPLES: usize = 3;

/// A two-column table; names are literal, values already escaped HTML.
fn kv_table(h: &mut String, rows: &[(&str, String)]) {
    h.push_str("<table>\n");
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    h.push_str("</table>\n");
}

fn html(info: &RunInfo, analysis: &Analysis, perf: &Perf) -> io::Result<String> {
    let mut h = String::new();
    let title = format!("{} — seed {}", info.system, info.seed);
    // fmt::Write into a String cannot fail.
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>rill-jepsen: {}</title><style>{CSS}</style></head><body>\n<h1>rill-jepsen: {}</h1>\n",
        esc(&title),
        esc(&title)
    );
    if analysis.valid {
        h.push_str("<div class=\"verdict valid\">VALID: no forbidden anomaly</div>\n");
    } else {
        let _ = writeln!(h, "<div class=\"verdict invalid\">INVALID: {}</div>", esc(&analysis.bad.join(", ")));
    }

    let perf_summary = perf.summary();
    let latency = &perf_summary["send_latency_ms"];
    let ms = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1} ms"));
    let s = &analysis.stats;
    let drain = match s.drain_complete {
        None => "none",
        Some(true) => "complete",
        Some(false) => "incomplete",
    };
    let summary = [
        (
            "sends ok / fail / info / pending",
            format!("{} / {} / {} / {}", s.sends_ok, s.sends_fail, s.sends_info, s.sends_pending),
        ),
        (
            "acked sends read / lost / unseen / missing from drain",
            format!("{} / {} / {} / {}", s.acked_read, s.lost, s.unseen, s.missing_from_drain),
        ),
        ("polls ok, distinct values read", format!("{}, {}", s.polls_ok, s.values_read)),
        ("keys", s.distinct_keys.to_string()),
        ("final drain", drain.to_string()),
        (
            "ok sends/s, ok polls/s",
            format!(
                "{:.1}, {:.1}",
                perf_summary["ok_sends_per_s"].as_f64().unwrap_or(0.0),
                perf_summary["ok_polls_per_s"].as_f64().unwrap_or(0.0)
            ),
        ),
        (
            "send latency p50 / p99 / max",
            format!("{} / {} / {}", ms(&latency["p50"]), ms(&latency["p99"]), ms(&latency["max"])),
        ),
    ];
    h.push_str("<h2>Summary</h2>\n");
    kv_table(&mut h, &summary);

    h.push_str("<h2>Anomalies</h2>\n");
    if analysis.anomalies.is_empty() {
        h.push_str("<p>None found.</p>\n");
    } else {
        h.push_str("<table><tr><th>kind</th><th>count</th><th>status</th><th>examples</th></tr>\n");
        for (kind, r) in &analysis.anomalies {
            let status = match (&r.allowed, &r.why_allowed) {
                (true, Some(why)) => format!("<span class=\"allowed\">allowed: {}</span>", esc(why)),
                (true, None) => "<span class=\"allowed\">allowed</span>".to_string(),
                (false, _) => "<span class=\"forbidden\">forbidden</span>".to_string(),
            };
            let mut examples = String::new();
            for e in r.examples.iter().take(HTML_EXAMPLES) {
                // One line per example (wrapped by CSS) scans better than pretty JSON.
                let text = serde_json::to_string(e).map_err(io::Error::other)?;
                let _ = write!(examples, "<pre>{}</pre>", esc(&text));
            }
            let more = r.examples.len().saturating_sub(HTML_EXAMPLES);
            if more > 0 {
                let _ = write!(examples, "<p>{more} more in summary.json</p>");
            }
            let _ = writeln!(
                h,
                "<tr class=\"anomaly\" id=\"{k}\"><td>{k}</td><td>{}</td><td>{status}</td><td><details><summary>{} example(s)</summary>{examples}</details></td></tr>",
                r.count,
                r.examples.len(),
                k = esc(kind)
            );
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>Charts</h2>\n");
    let _ = writeln!(h, "<div class=\"chart\">{}</div>", throughput_chart(perf)?);
    let _ = writeln!(h, "<div class=\"chart\">{}</div>", latency_chart(perf)?);

    h.push_str("<h2>Run</h2>\n");
    let workload = serde_json::to_string_pretty(&info.workload).map_err(io::Error::other)?;
    let rows = [
        ("system", esc(&info.system)),
        ("seed", info.seed.to_string()),
        ("nodes", info.nodes.to_string()),
        ("duration", format!("{} s", info.duration_s)),
        ("nemeses", esc(&info.nemeses.join(", "))),
        ("started at", esc(&info.started_at)),
        ("workload", format!("<pre>{}</pre>", esc(&workload))),
    ];
    kv_table(&mut h, &rows);
    h.push_str("<h3>Re-run</h3>\n");
    let _ = writeln!(h, "<pre class=\"rerun\">{}</pre>", esc(&info.rerun));
    if !info.notes.is_empty() {
        h.push_str("<h3>Notes</h3>\n<ul>\n");
        for n in &info.notes {
            let _ = writeln!(h, "<li>{}</li>", esc(n));
        }
        h.push_str("</ul>\n");
    }

    h.push_str("<h2>Nemesis windows</h2>\n");
    if perf.windows.is_empty() {
        h.push_str("<p>None.</p>\n");
    } else {
        h.push_str("<table><tr><th>nemesis</th><th>targets</th><th>from (s)</th><th>to (s)</th></tr>\n");
        for w in &perf.windows {
            let end = if w.stopped { format!("{:.1}", w.end_s) } else { format!("{:.1} (never stopped)", w.end_s) };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{end}</td></tr>",
                esc(&w.name),
                esc(&w.targets.join(", ")),
                w.start_s
            );
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>Statistics</h2>\n");
    let stats = serde_json::to_string_pretty(&json!({"history": analysis.stats, "perf": perf_summary}))
        .map_err(io::Error::other)?;
    let _ = writeln!(h, "<pre>{}</pre>", esc(&stats));
    h.push_str("</body></html>\n");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{check, CheckOptions};
    use crate::history::{Key, Offset, Val, NEMESIS_PROCESS};

    fn op(index: u64, time_ms: u64, process: Process, kind: OpType, body: Body) -> Op {
        Op { index, time_ns: time_ms * 1_000_000, process, kind, body, error: None }
    }

    fn nemesis(name: &str, action: NemesisAction) -> Body {
        Body::Nemesis { name: name.into(), action, targets: vec!["n2".into()] }
    }

    /// Three seconds of sends and polls under a partition and a kill, with one value lost.
    fn history() -> Vec<Op> {
        let mut ops = Vec::new();
        let mut push = |time_ms: u64, process: Process, kind: OpType, body: Body| {
            let i = ops.len() as u64;
            ops.push(op(i, time_ms, process, kind, body));
        };
        push(100, NEMESIS_PROCESS, OpType::Invoke, nemesis("partition", NemesisAction::Start));
        push(120, NEMESIS_PROCESS, OpType::Info, nemesis("partition", NemesisAction::Start));
        push(150, NEMESIS_PROCESS, OpType::Invoke, nemesis("kill", NemesisAction::Start));
        let send = |k: Key, v: Val, o: Option<Offset>| Body::Send { key: k, value: v, offset: o };
        for i in 0..30u64 {
            let t = 100 * i;
            push(t, 0, OpType::Invoke, send(0, i, None));
            push(t + 5 + i, 0, OpType::Ok, send(0, i, Some(i as Offset)));
        }
        push(1500, NEMESIS_PROCESS, OpType::Invoke, nemesis("partition", NemesisAction::Stop));
        push(1600, NEMESIS_PROCESS, OpType::Info, nemesis("partition", NemesisAction::Stop));
        push(3000, 1, OpType::Invoke, Body::Assign { keys: vec![0], seek_to_beginning: true });
        push(3001, 1, OpType::Ok, Body::Assign { keys: vec![0], seek_to_beginning: true });
        push(3002, 1, OpType::Invoke, Body::Poll { records: vec![] });
        let records = (0..30).filter(|&i| i != 7).map(|i| (0, i as Offset, i)).collect();
        push(3010, 1, OpType::Ok, Body::Poll { records });
        ops
    }

    fn info() -> RunInfo {
        RunInfo {
            system: "rill".into(),
            seed: 42,
            nodes: 3,
            duration_s: 3.0,
            nemeses: vec!["partition".into(), "kill".into()],
            workload: json!({"keys": 1, "producers": 1, "idempotence": true}),
            rerun: "rill-jepsen test --seed 42 --nemesis partition,kill <&>".into(),
            started_at: "2026-12-04T23:00:00Z".into(),
            notes: vec!["hand-made history".into()],
        }
    }

    #[test]
    fn windows_pair_start_and_stop_by_name() {
        let perf = Perf::from_ops(&history());
        let got: Vec<(&str, f64, f64, bool)> =
            perf.windows.iter().map(|w| (w.name.as_str(), w.start_s, w.end_s, w.stopped)).collect();
        assert_eq!(got, vec![("partition", 0.1, 1.6, true), ("kill", 0.15, 3.01, false)]);
        assert_eq!(perf.sends_ok.iter().sum::<u32>(), 30);
        assert_eq!(perf.sends_ok.len(), 4);
        let s = perf.summary();
        assert_eq!(s["send_latency_ms"]["count"], 30);
        assert_eq!(s["send_latency_ms"]["max"], 34.0);
        assert_eq!(s["send_latency_ms"]["p50"], 19.0);
    }

    #[test]
    fn writes_summary_and_a_self_contained_report() {
        let ops = history();
        let analysis = check(&ops, &CheckOptions::default());
        assert_eq!(analysis.bad, vec!["int-poll-skip", "lost-write"]);
        let dir = std::env::temp_dir().join(format!("rill-jepsen-report-{}", std::process::id()));
        write(&dir, &info(), &ops, &analysis).unwrap();

        let summary: Value = serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["analysis"]["valid"], false);
        assert_eq!(summary["analysis"]["bad"], json!(["int-poll-skip", "lost-write"]));
        assert_eq!(summary["analysis"]["anomalies"]["lost-write"]["examples"][0]["value"], 7);
        assert_eq!(summary["run"]["seed"], 42);
        assert_eq!(summary["perf"]["sends_ok"], 30);
        assert!(summary["perf"]["ok_sends_per_s"].as_f64().unwrap() > 9.0);
        let back: Analysis = serde_json::from_value(summary["analysis"].clone()).unwrap();
        assert_eq!(back.anomalies["lost-write"].count, 1);

        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        assert!(html.contains("INVALID: int-poll-skip, lost-write"));
        assert!(
            html.contains(
                "<tr><th>acked sends read / lost / unseen / missing from drain</th><td>29 / 1 / 0 / 0</td></tr>"
            ),
            "{html}"
        );
        assert!(html.contains("<tr class=\"anomaly\" id=\"lost-write\"><td>lost-write</td><td>1</td>"), "{html}");
        assert!(html.contains("<tr class=\"anomaly\" id=\"int-poll-skip\">"));
        assert_eq!(html.matches("<svg").count(), 2);
        // Text is written as SVG <text>, with no font files involved.
        assert!(html.contains("\nThroughput\n</text>"), "{html}");
        assert!(html.contains("\npartition\n</text>") && html.contains("\nkill\n</text>"));
        assert!(html.contains("--nemesis partition,kill &lt;&amp;&gt;"));
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
