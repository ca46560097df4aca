//! The demo's self-contained HTML report: inline SVG charts and inline CSS, no script and
//! nothing fetched, so it opens anywhere without a network.

use std::fmt::Write as _;

use serde::Serialize;

/// A notification marker on a turbine's chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Marker {
    pub time_micros: i64,
    /// `firing`, `reminder`, `resolved` or `silenced`.
    pub kind: String,
}

/// One turbine's closed windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurbineSeries {
    pub device: String,
    /// (window start, average) in time order.
    pub windows: Vec<(i64, f64)>,
    pub markers: Vec<Marker>,
}

/// A notification as the alerter sent it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationLine {
    pub time_micros: i64,
    pub kind: String,
    pub subject: String,
}

/// Everything the report shows.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct DemoReport {
    pub title: String,
    pub subtitle: String,
    pub threshold: f64,
    pub turbines: Vec<TurbineSeries>,
    pub accidents_by_severity: Vec<(String, f64)>,
    pub accidents_by_county: Vec<(String, f64)>,
    pub notifications: Vec<NotificationLine>,
    pub summary: Vec<(String, String)>,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

fn hhmm(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_default()
}

/// Orders names with numbers in them as a person would: device2 before device10.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| {
        let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (stem, num) = s.split_at(s.len() - digits);
        (stem.to_owned(), num.parse::<u64>().ok())
    };
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

/// Round y-axis ticks from 0 covering `top` (at least 5): a step of 1, 2, 2.5 or 5 times a power of
/// ten giving at most six ticks.
pub fn y_ticks(top: f64) -> Vec<f64> {
    let top = top.max(5.0);
    let magnitude = 10f64.powf((top / 5.0).log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| (top / step).ceil() <= 5.0)
        .unwrap_or(10.0 * magnitude);
    let n = (top / step).ceil() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

const W: f64 = 560.0;
const H: f64 = 180.0;
const PAD_L: f64 = 40.0;
const PAD_B: f64 = 22.0;

/// A line chart of one turbine's window averages against the threshold.
pub fn turbine_chart(series: &TurbineSeries, threshold: f64) -> String {
    let mut svg = String::new();
    let (t0, t1) = match (series.windows.first(), series.windows.last()) {
        (Some(a), Some(b)) => (a.0, b.0.max(a.0 + 1)),
        _ => (0, 1),
    };
    let ticks = y_ticks(series.windows.iter().map(|w| w.1).fold(threshold, f64::max) * 1.05);
    let vmax = ticks.last().copied().unwrap_or(1.0).max(1.0);
    let x = |t: i64| PAD_L + (t - t0) as f64 / (t1 - t0) as f64 * (W - PAD_L - 10.0);
    let y = |v: f64| (H - PAD_B) - v / vmax * (H - PAD_B - 10.0);
    let _ = write!(
        svg,
        r#"<svg class="chart" data-device="{d}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="window averages of {d}">"#,
        d = escape(&series.device)
    );
    let _ = write!(
        svg,
        r##"<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/>"##
    );
    // Axes and labels.
    let _ = write!(
        svg,
        r##"<line x1="{PAD_L}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{PAD_L}" y1="10" x2="{PAD_L}" y2="{b}" stroke="#999"/>"##,
        b = H - PAD_B,
        r = W - 10.0
    );
    for v in &ticks {
        let _ = write!(
            svg,
            r##"<text class="tick" x="{tx}" y="{ty:.1}" font-size="10" text-anchor="end" fill="#555">{v}</text><line x1="{PAD_L}" y1="{gy:.1}" x2="{r}" y2="{gy:.1}" stroke="#eee"/>"##,
            tx = PAD_L - 4.0,
            ty = y(*v) + 3.0,
            gy = y(*v),
            r = W - 10.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{PAD_L}" y="{ty}" font-size="10" fill="#555">{a}</text><text x="{r}" y="{ty}" font-size="10" text-anchor="end" fill="#555">{b}</text>"##,
        ty = H - 6.0,
        r = W - 10.0,
        a = hhmm(t0),
        b = hhmm(t1)
    );
    // Threshold.
    let _ = write!(
        svg,
        r##"<line class="threshold" x1="{PAD_L}" y1="{ty:.1}" x2="{r}" y2="{ty:.1}" stroke="#d33" stroke-dasharray="5,4"/><text class="threshold-label" x="{r}" y="{ly:.1}" font-size="10" text-anchor="end" fill="#d33">threshold {threshold}</text>"##,
        ty = y(threshold),
        ly = y(threshold) - 3.0,
        r = W - 10.0
    );
    // Averages.
    let points: Vec<String> = series
        .windows
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
        .collect();
    let _ = write!(
        svg,
        r##"<polyline class="avg" fill="none" stroke="#1565c0" stroke-width="2" points="{}"/>"##,
        points.join(" ")
    );
    for (t, v) in &series.windows {
        let color = if *v > threshold { "#d33" } else { "#1565c0" };
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"><title>{} avg {:.1}</title></circle>"#,
            x(*t),
            y(*v),
            hhmm(*t),
            v
        );
    }
    for m in &series.markers {
        let color = match m.kind.as_str() {
            "resolved" => "#2e7d32",
            "reminder" => "#ef6c00",
            // Held back by a silence: recorded, not sent.
            "silenced" => "#757575",
            _ => "#c62828",
        };
        let mx = x(m.time_micros.clamp(t0, t1));
        let _ = write!(
            svg,
            r#"<path class="marker {k}" d="M{mx:.1},12 l-5,-8 h10 z" fill="{color}"><title>{k} {t}</title></path><line x1="{mx:.1}" y1="12" x2="{mx:.1}" y2="{b}" stroke="{color}" stroke-opacity="0.35"/>"#,
            k = escape(&m.kind),
            t = hhmm(m.time_micros),
            b = H - PAD_B
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A horizontal bar chart.
pub fn bar_chart(title: &str, bars: &[(String, f64)]) -> String {
    let row = 18.0;
    let height = 10.0 + row * bars.len().max(1) as f64;
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
    let mut svg = format!(
        r#"<svg class="bars" viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" aria-label="{t}">"#,
        t = escape(title)
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 5.0 + i as f64 * row;
        let w = v / max * (W - 200.0);
        let _ = write!(
            svg,
            r##"<text x="150" y="{ty:.1}" font-size="11" text-anchor="end">{l}</text><rect x="156" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="#5c6bc0"/><text x="{vx:.1}" y="{ty:.1}" font-size="11">{v}</text>"##,
            ty = y + 12.0,
            l = escape(label),
            h = row - 4.0,
            vx = 160.0 + w,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// What the turbine charts' lines, dots and markers mean (colours as drawn).
const LEGEND: &str = r##"<p class="legend"><svg width="24" height="10"><line x1="0" y1="5" x2="24" y2="5" stroke="#1565c0" stroke-width="2"/></svg> window average (mph) <svg width="10" height="10"><circle cx="5" cy="5" r="3" fill="#d33"/></svg> above the threshold <svg width="24" height="10"><line x1="0" y1="5" x2="24" y2="5" stroke="#d33" stroke-dasharray="5,4"/></svg> threshold &nbsp; notifications: <svg width="12" height="10"><path d="M6,10 l-5,-8 h10 z" fill="#c62828"/></svg> firing <svg width="12" height="10"><path d="M6,10 l-5,-8 h10 z" fill="#ef6c00"/></svg> reminder <svg width="12" height="10"><path d="M6,10 l-5,-8 h10 z" fill="#2e7d32"/></svg> resolved</p>"##;

/// The whole report as one HTML document.
pub fn render_html(report: &DemoReport) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#222;background:#fafafa}}
h1{{margin-bottom:0}} .sub{{color:#666;margin-top:.3rem}}
section{{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:1rem 1.2rem;margin:1.2rem 0}}
.grid{{display:flex;flex-wrap:wrap;gap:1rem}} figure{{margin:0}} figcaption{{font-weight:600;margin-bottom:.3rem}}
table{{border-collapse:collapse}} td,th{{border-bottom:1px solid #eee;padding:.25rem .8rem;text-align:left;font-size:.9rem}}
.firing{{color:#c62828}} .reminder{{color:#ef6c00}} .resolved{{color:#2e7d32}}
</style></head><body>
<h1>{title}</h1><p class="sub">{subtitle}</p>
"#,
        title = escape(&report.title),
        subtitle = escape(&report.subtitle)
    );
    html.push_str("<section><h2>Summary</h2><table>");
    for (k, v) in &report.summary {
        let _ = write!(
            html,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(k),
            escape(v)
        );
    }
    html.push_str("</table></section>");
    let _ = write!(
        html,
        "<section><h2>Wind turbines: tumbling-window averages against the {} mph threshold</h2>",
        report.threshold
    );
    html.push_str(LEGEND);
    html.push_str("<div class=\"grid\">");
    let mut turbines: Vec<&TurbineSeries> = report.turbines.iter().collect();
    turbines.sort_by(|a, b| natural_cmp(&a.device, &b.device));
    for t in turbines {
        let _ = write!(
            html,
            "<figure class=\"turbine\"><figcaption>{}</figcaption>{}</figure>",
            escape(&t.device),
            turbine_chart(t, report.threshold)
        );
    }
    html.push_str("</div></section>");
    html.push_str("<section><h2>Accident metrics</h2><div class=\"grid\">");
    let _ = write!(
        html,
        "<figure><figcaption>Selected accidents by severity</figcaption>{}</figure>",
        bar_chart("by severity", &report.accidents_by_severity)
    );
    let _ = write!(
        html,
        "<figure><figcaption>By county (top {})</figcaption>{}</figure>",
        report.accidents_by_county.len(),
        bar_chart("by county", &report.accidents_by_county)
    );
    html.push_str("</div></section>");
    let _ = write!(
        html,
        "<section><h2>Notifications ({})</h2><table><tr><th>event time</th><th>kind</th><th>subject</th></tr>",
        // Lines of kind `silenced` were held back, not sent.
        report
            .notifications
            .iter()
            .filter(|n| n.kind != "silenced")
            .count()
    );
    for n in &report.notifications {
        let _ = write!(
            html,
            "<tr class=\"{k}\"><td>{t}</td><td>{k}</td><td>{s}</td></tr>",
            k = escape(&n.kind),
            t = escape(&streamwatch_core::time::format_micros(n.time_micros)),
            s = escape(&n.subject)
        );
    }
    html.push_str("</table></section></body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_chart_per_turbine_and_escapes_text() {
        let report = DemoReport {
            title: "streamwatch <demo>".into(),
            threshold: 60.0,
            turbines: (1..=3)
                .map(|i| TurbineSeries {
                    device: format!("device{i}"),
                    windows: vec![(0, 50.0), (60_000_000, 70.0)],
                    markers: vec![Marker {
                        time_micros: 60_000_000,
                        kind: "firing".into(),
                    }],
                })
                .collect(),
            accidents_by_severity: vec![("3".into(), 10.0), ("4".into(), 2.0)],
            notifications: vec![NotificationLine {
                time_micros: 0,
                kind: "firing".into(),
                subject: "a & b".into(),
            }],
            ..Default::default()
        };
        let html = render_html(&report);
        assert_eq!(html.matches("<svg class=\"chart\"").count(), 3);
        assert!(html.contains("streamwatch &lt;demo&gt;"));
        assert!(html.contains("a &amp; b"));
        assert!(!html.contains("<script"));
        assert!(html.contains("class=\"legend\"") && html.contains("</svg> resolved</p>"));
        assert!(html.contains(">threshold 60</text>"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn devices_in_natural_order_and_round_ticks() {
        let mut names = vec!["device10", "device2", "device1", "pump", "device02"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            ["device1", "device02", "device2", "device10", "pump"]
        );
        assert_eq!(y_ticks(42.0), [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert_eq!(y_ticks(78.75), [0.0, 20.0, 40.0, 60.0, 80.0]);
        assert_eq!(y_ticks(63.0), [0.0, 20.0, 40.0, 60.0, 80.0]);
        assert_eq!(y_ticks(0.5), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let report = DemoReport {
            threshold: 60.0,
            turbines: ["device10", "device2", "device1"]
                .map(|d| TurbineSeries {
                    device: d.into(),
                    windows: vec![(0, 40.0), (60_000_000, 75.0)],
                    markers: Vec::new(),
                })
                .to_vec(),
            ..Default::default()
        };
        let html = render_html(&report);
        let at = |d: &str| html.find(&format!("data-device=\"{d}\"")).unwrap();
        assert!(at("device1") < at("device2") && at("device2") < at("device10"));
        let ticks: Vec<&str> = html
            .split("class=\"tick\"")
            .skip(1)
            .filter_map(|t| t.split('>').nth(1)?.split('<').next())
            .collect();
        assert_eq!(&ticks[..5], ["0", "20", "40", "60", "80"]);
    }
}
