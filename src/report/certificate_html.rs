//! Renders a [`Certificate`] as one self-contained HTML document: inline
//! CSS (`certificate.css`) and SVG, no script, no external asset. Each
//! group is a `<section>` that starts a new printed page.
//!
//! Every number is in an element with a stable `id` and a `data-value`
//! (the exact value: decimals as the meter sent them, times in RFC 3339),
//! like the dashboard's, so that a test or a tool reads the page without
//! parsing its text:
//!
//! - group `G` (its name, sanitised, as `g-NAME`; `ungrouped` for meters
//!   without one): `G-meters`, `G-provable`, `G-estimable`, `G-lost`,
//!   `G-complete` … `G-anomalous`, `G-expected`, `G-received`, `G-late`,
//!   `G-missing`, `G-window-from`, `G-window-to`;
//! - a meter register: `G/METER/REGISTER/FIELD` (register `-` when there is
//!   none) for `opening_value`, `opening_ts`, `closing_value`, `closing_ts`,
//!   `consumption`, `expected`, `received`, `missing`, `verdict`;
//! - the verification box: `G-checkpoint-size`, `G-checkpoint-root`,
//!   `G-checkpoint-key-id`, `G-files`; each file a row with `data-path`,
//!   `data-ledger-index` and `data-sha256`.

use std::collections::HashSet;
use std::fmt::Write as _;

use std::path::Path;

use super::certificate::{
    Certificate, CertificateError, CertificateRequest, CertifiedRow, FileFact, GroupCertificate,
    SignatureCheck, Verdict,
};
use super::StoredReadings;
use crate::continuity::window::{Status, ValueAt, Window};
use crate::continuity::Context;
use crate::continuity::SECOND;
use crate::reading::format_fixed;
use crate::time::format_micros;

const CSS: &str = include_str!("certificate.css");

/// The document.
pub(crate) fn render(cert: &Certificate) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = match cert.groups.as_slice() {
        [g] => format!("Outage certificate: {}", group_label(g)),
        gs => format!("Outage certificates: {} groups", gs.len()),
    };
    let _ = writeln!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"gapless {}\">\n<title>{} — {} to {}</title>\n\
         <style>\n{CSS}</style>\n</head>\n<body data-from=\"{}\" data-to=\"{}\" data-groups=\"{}\">",
        env!("CARGO_PKG_VERSION"),
        esc(&title),
        esc(&human_time(cert.window.from)),
        esc(&human_time(cert.window.to)),
        format_micros(cert.window.from),
        format_micros(cert.window.to),
        cert.groups.len(),
    );
    let mut used = HashSet::new();
    for g in &cert.groups {
        let gid = unique_id(group_id(g), &mut used);
        section(&mut out, cert, g, &gid);
    }
    if cert.groups.is_empty() {
        out.push_str(
            "<section class=\"cert\"><p>No meter register is in service in this window.</p></section>\n",
        );
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn group_label(g: &GroupCertificate) -> String {
    match &g.group {
        Some(name) => name.clone(),
        None => "meters without a group".into(),
    }
}

/// `g-NAME` with every character outside `A-Za-z0-9_-` as `_`.
fn group_id(g: &GroupCertificate) -> String {
    match &g.group {
        Some(name) => format!(
            "g-{}",
            name.chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                })
                .collect::<String>()
        ),
        None => "ungrouped".into(),
    }
}

/// Two group names that sanitise alike get `-2`, `-3`, … (in group order,
/// so the ids stay the same for the same data).
fn unique_id(base: String, used: &mut HashSet<String>) -> String {
    let mut id = base.clone();
    let mut n = 2;
    while !used.insert(id.clone()) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// HTML text and attribute escaping.
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

/// `2022-07-23 00:00 UTC` (seconds only when there are some).
fn human_time(micros: i64) -> String {
    crate::time::format_human(micros)
}

fn human_span(micros: i64) -> String {
    let s = micros / SECOND;
    match s {
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 3600 => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
        s => format!("{} min", s / 60),
    }
}

/// A count with its id.
fn count(id: &str, v: u64) -> String {
    format!(
        "<span class=\"n\" id=\"{}\" data-value=\"{v}\">{v}</span>",
        esc(id)
    )
}

fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Provable => "Exactly provable",
        Verdict::Estimable => "Estimable only",
        Verdict::Lost => "Lost",
    }
}

fn verdict_explained(v: Verdict) -> &'static str {
    match v {
        Verdict::Provable => {
            "readings on both sides, register continuous: consumption = closing − opening, \
             exactly as the meter sent them"
        }
        Verdict::Estimable => {
            "readings on both sides, but the register is not continuous (replaced, reset, \
             late first reading, anomaly): a figure to check"
        }
        Verdict::Lost => {
            "no reading on one side of the window: estimate from comparable periods \
             (HeizkostenV §9a)"
        }
    }
}

fn section(out: &mut String, cert: &Certificate, g: &GroupCertificate, gid: &str) {
    let w = cert.window;
    let s = &g.summary;
    let _ = writeln!(
        out,
        "<section class=\"cert\" id=\"{gid}\" data-group=\"{}\">\n<header class=\"head\">\n\
         <div class=\"kicker\">Outage certificate · metering continuity</div>\n\
         <h1>{}</h1>\n<p class=\"window\">Outage window \
         <time id=\"{gid}-window-from\" data-value=\"{}\" datetime=\"{}\">{}</time> → \
         <time id=\"{gid}-window-to\" data-value=\"{}\" datetime=\"{}\">{}</time> \
         <span class=\"span\">({})</span></p>\n\
         <p class=\"issued\">Issued {} by gapless {} from the readings sealed in its audit ledger{}.</p>\n\
         </header>",
        esc(g.group.as_deref().unwrap_or("")),
        esc(&match &g.group {
            Some(name) => format!("Group {name}"),
            None => "Meters without a group".into(),
        }),
        format_micros(w.from),
        format_micros(w.from),
        esc(&human_time(w.from)),
        format_micros(w.to),
        format_micros(w.to),
        esc(&human_time(w.to)),
        human_span(w.to - w.from),
        esc(&human_time(cert.generated_at)),
        env!("CARGO_PKG_VERSION"),
        cert.verification
            .checkpoint
            .as_ref()
            .map(|c| format!(" (checkpoint of {} entries)", c.size))
            .unwrap_or_default(),
    );

    // The verdicts: what billing needs first.
    out.push_str("<div class=\"verdicts\">\n");
    for v in Verdict::ALL {
        let _ = writeln!(
            out,
            "<div class=\"tile {}\"><div class=\"big\">{}</div><div class=\"label\">{}</div>\
             <div class=\"why\">{}</div></div>",
            v.as_str(),
            count(&format!("{gid}-{}", v.as_str()), g.verdicts[v as usize]),
            verdict_label(v),
            verdict_explained(v)
        );
    }
    out.push_str("</div>\n");
    let _ = writeln!(
        out,
        "<p class=\"totals\">{} meter registers in service in the window. Readings: {} expected, \
         {} received ({} late), {} missing. By status: {} complete, {} bridged, {} open, \
         {} silent, {} anomalous.</p>",
        count(&format!("{gid}-meters"), s.meters),
        count(&format!("{gid}-expected"), s.expected),
        count(&format!("{gid}-received"), s.received),
        count(&format!("{gid}-late"), s.late),
        count(&format!("{gid}-missing"), s.missing),
        count(&format!("{gid}-complete"), s.count(Status::Complete)),
        count(&format!("{gid}-bridged"), s.count(Status::Bridged)),
        count(&format!("{gid}-open"), s.count(Status::Open)),
        count(&format!("{gid}-silent"), s.count(Status::Silent)),
        count(&format!("{gid}-anomalous"), s.count(Status::Anomalous)),
    );

    coverage_svg(out, cert, g, gid);
    meter_table(out, g, gid);
    verification(out, cert, g, gid);
    let _ = writeln!(
        out,
        "<footer class=\"foot\">{} · outage window {} → {} · issued {} · gapless {}</footer>\n</section>",
        esc(&group_label(g)),
        esc(&human_time(w.from)),
        esc(&human_time(w.to)),
        esc(&human_time(cert.generated_at)),
        env!("CARGO_PKG_VERSION"),
    );
}

/// A word as a POSIX shell reads it (quoted when it needs to be).
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=+@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Cell colours of the picture (class names in the CSS).
fn cell_class(expected: u32, received: u32) -> &'static str {
    match (expected, received) {
        (0, _) => "due0",
        (e, r) if r >= e => "full",
        (_, 0) => "none",
        _ => "part",
    }
}

/// Meters × time: one row per meter register, one column per bucket,
/// coloured by readings received against expected. A meter due less often
/// than a bucket is judged over spans of round(interval / bucket) buckets
/// (a daily reading is not late because it came at 03:17, not 00:00).
fn coverage_svg(out: &mut String, cert: &Certificate, g: &GroupCertificate, gid: &str) {
    let rows = &g.rows;
    let n = rows
        .first()
        .map_or(0, |r| r.coverage.expected_by_bucket.len());
    if rows.is_empty() || n == 0 {
        return;
    }
    let (label_w, grid_w, top) = (118.0, 560.0, 16.0);
    let row_h: f64 = (220.0 / rows.len() as f64).clamp(1.5, 11.0);
    let labels = row_h >= 7.0;
    let cell_w = grid_w / n as f64;
    let height = top + row_h * rows.len() as f64 + 2.0;
    let width = label_w + grid_w + 2.0;
    let w = cert.window;
    let bucket = (w.to - w.from) / n as i64;
    let _ = writeln!(
        out,
        "<figure class=\"coverage\">\n<figcaption>Coverage across the window: readings received against \
         expected, per meter register and {}</figcaption>\n\
         <svg id=\"{gid}-coverage\" viewBox=\"0 0 {width:.0} {height:.1}\" role=\"img\" \
         aria-label=\"coverage of {} meter registers over {n} buckets\" data-series=\"{}\" data-buckets=\"{n}\">",
        human_span(bucket),
        rows.len(),
        rows.len(),
    );
    // Time axis: a tick every quarter of the window.
    for i in (0..=n).step_by((n / 4).max(1)) {
        let x = label_w + i as f64 * cell_w;
        let t = w.from + bucket * i as i64;
        let anchor = if i == 0 {
            "start"
        } else if i == n {
            "end"
        } else {
            "middle"
        };
        let _ = writeln!(
            out,
            "<line class=\"tick\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\
             <text class=\"axis\" x=\"{x:.1}\" y=\"10\" text-anchor=\"{anchor}\">{}</text>",
            top - 3.0,
            height - 2.0,
            esc(&human_time(t).replace(" UTC", ""))
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        if labels {
            let _ = write!(
                out,
                "<text class=\"meter\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                label_w - 4.0,
                y + row_h * 0.78,
                esc(&format!(
                    "{} {}",
                    r.row.meter_id,
                    r.row.register.as_deref().unwrap_or("")
                ))
            );
        }
        let c = &r.coverage;
        let span =
            ((c.interval_s as f64 / (bucket as f64 / SECOND as f64)).round() as usize).max(1);
        // Spans of one colour in a row are drawn as one rectangle.
        let mut cells: Vec<(usize, usize, &str)> = Vec::new();
        let mut b = 0;
        while b < n {
            let end = (b + span).min(n);
            let e: u32 = c.expected_by_bucket[b..end].iter().sum();
            let got: u32 = c.received_by_bucket[b..end].iter().sum();
            let class = cell_class(e, got);
            match cells.last_mut() {
                Some(last) if last.2 == class => last.1 = end,
                _ => cells.push((b, end, class)),
            }
            b = end;
        }
        let h = (row_h - if row_h >= 4.0 { 0.8 } else { 0.3 }).max(0.5);
        for (from, to, class) in cells {
            let _ = write!(
                out,
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\"/>",
                label_w + from as f64 * cell_w + 0.3,
                (to - from) as f64 * cell_w - 0.6,
            );
        }
        out.push('\n');
    }
    out.push_str(
        "</svg>\n<div class=\"legend\"><span class=\"sw full\"></span>all expected readings \
                  <span class=\"sw part\"></span>some missing <span class=\"sw none\"></span>none \
                  <span class=\"sw due0\"></span>none due</div>\n</figure>\n",
    );
}

fn value_cells(out: &mut String, base: &str, name: &str, v: Option<ValueAt>, unit: &str) {
    match v {
        Some(v) => {
            let value = format_fixed(v.value, v.decimals);
            let ts = format_micros(v.ts);
            let _ = write!(
                out,
                "<td class=\"num\"><span id=\"{base}/{name}_value\" data-value=\"{value}\">{value}</span>\
                 <span class=\"unit\">{}</span><br><time id=\"{base}/{name}_ts\" data-value=\"{ts}\" \
                 datetime=\"{ts}\">{}</time></td>",
                esc(unit),
                esc(&human_time(v.ts))
            );
        }
        None => {
            let _ = write!(out, "<td class=\"num none\">no reading</td>");
        }
    }
}

fn meter_table(out: &mut String, g: &GroupCertificate, gid: &str) {
    if g.rows.is_empty() {
        out.push_str("<p class=\"empty\">No meter register of this status.</p>\n");
        return;
    }
    out.push_str(
        "<table class=\"meters\">\n<thead><tr><th>Meter · register</th><th>Medium</th>\
         <th class=\"num\">Opening reading</th><th class=\"num\">Closing reading</th>\
         <th class=\"num\">Consumption</th><th class=\"num\">Readings<br>missing / due</th>\
         <th>Consumption is</th></tr></thead>\n<tbody>\n",
    );
    for r in &g.rows {
        meter_row(out, r, gid);
    }
    out.push_str("</tbody>\n</table>\n");
}

fn meter_row(out: &mut String, c: &CertifiedRow, gid: &str) {
    let r = &c.row;
    let register = r.register.as_deref().unwrap_or("-");
    let base = esc(&format!("{gid}/{}/{register}", r.meter_id));
    let unit = r.unit.as_deref().unwrap_or("");
    let _ = write!(
        out,
        "<tr id=\"{base}\" class=\"{}\" data-meter=\"{}\" data-register=\"{}\" data-status=\"{}\" \
         data-verdict=\"{}\"><td><span class=\"meter\">{}</span> <span class=\"reg\">{}</span>",
        c.verdict.as_str(),
        esc(&r.meter_id),
        esc(r.register.as_deref().unwrap_or("")),
        r.status.as_str(),
        c.verdict.as_str(),
        esc(&r.meter_id),
        esc(r.register.as_deref().unwrap_or("no reading ever")),
    );
    let mut notes: Vec<String> = r.notes.clone();
    if r.closing.is_none() && r.consumption.is_none() && r.opening.is_some() {
        notes.push("no reading after the window yet".into());
    }
    if r.opening.is_none() && r.register.is_some() {
        notes.push("no reading before or in the window".into());
    }
    let _ = write!(
        out,
        "</td><td>{}<br><span class=\"status {}\">{}</span></td>",
        r.medium.as_str(),
        r.status.as_str(),
        r.status.as_str()
    );
    value_cells(out, &base, "opening", r.opening, unit);
    value_cells(out, &base, "closing", r.closing, unit);
    match r.consumption {
        Some(v) => {
            let text = format_fixed(v, r.consumption_decimals);
            let _ = write!(
                out,
                "<td class=\"num\"><span id=\"{base}/consumption\" data-value=\"{text}\">{text}</span>\
                 <span class=\"unit\">{}</span></td>",
                esc(unit)
            );
        }
        None => out.push_str("<td class=\"num none\">—</td>"),
    }
    let _ = writeln!(
        out,
        "<td class=\"num\"><span id=\"{base}/missing\" data-value=\"{}\">{}</span> / \
         <span id=\"{base}/expected\" data-value=\"{}\">{}</span>\
         <span id=\"{base}/received\" data-value=\"{}\" hidden></span></td>\
         <td><span class=\"verdict {}\" id=\"{base}/verdict\" data-value=\"{}\">{}</span></td></tr>",
        r.missing,
        r.missing,
        r.expected,
        r.expected,
        r.received,
        c.verdict.as_str(),
        c.verdict.as_str(),
        verdict_label(c.verdict),
    );
    // What the report explains (resets, replacements, anomalies), under
    // the row across the table.
    if !notes.is_empty() {
        let _ = writeln!(
            out,
            "<tr class=\"notes\"><td colspan=\"7\">{}</td></tr>",
            notes.iter().map(|n| esc(n)).collect::<Vec<_>>().join(" · ")
        );
    }
}

/// Sealed files listed by name on a group's page; more are counted.
const FILES_LISTED: usize = 3;

fn file_row(out: &mut String, f: &FileFact, covered_by: Option<u64>) {
    match &f.entry {
        Some(e) => {
            let covered = covered_by.is_some_and(|size| e.index < size);
            let _ = writeln!(
                out,
                "<tr data-path=\"{}\" data-ledger-index=\"{}\" data-sha256=\"{}\"><td class=\"num\">{}{}</td>\
                 <td class=\"path\">{}</td><td class=\"num\">{}</td><td class=\"hash\">{}</td></tr>",
                esc(&f.path),
                e.index,
                esc(&e.sha256),
                e.index,
                if covered { "" } else { " (after the checkpoint)" },
                esc(&f.path),
                e.rows,
                esc(&e.sha256),
            );
        }
        None => {
            let _ = writeln!(
                out,
                "<tr data-path=\"{}\"><td>—</td><td class=\"path\">{}</td><td></td>\
                 <td class=\"hash\">not entered in the ledger (written without it)</td></tr>",
                esc(&f.path),
                esc(&f.path),
            );
        }
    }
}

fn verification(out: &mut String, cert: &Certificate, g: &GroupCertificate, gid: &str) {
    let v = &cert.verification;
    let data = esc(&shell_word(&v.data.display().to_string()));
    out.push_str("<div class=\"verify\">\n<h2>Verification</h2>\n<div class=\"cols\">\n<dl>\n");
    match &v.checkpoint {
        Some(c) => {
            let sig = match &c.signature {
                SignatureCheck::Verified => {
                    "<span class=\"ok\">✓ signature verified (Ed25519) with the key below</span>: \
                     the data directory's own; check it against the key the operator publishes"
                        .to_string()
                }
                SignatureCheck::NotChecked(why) => format!(
                    "<span class=\"warn\">signature not checked here: {}</span>",
                    esc(why)
                ),
                SignatureCheck::Failed(why) => {
                    format!("<span class=\"bad\">✗ signature does NOT hold: {}</span>", esc(why))
                }
            };
            let _ = writeln!(
                out,
                "<dt>Checkpoint</dt><dd>{} · tree size {} entries</dd>\n\
                 <dt>Root (SHA-256)</dt><dd class=\"hash\" id=\"{gid}-checkpoint-root\" data-value=\"{}\">{}</dd>\n\
                 <dt>Signed by</dt><dd>{} · key id <code id=\"{gid}-checkpoint-key-id\" data-value=\"{}\">{}</code><br>{sig}</dd>\n\
                 <dt>Public key</dt><dd class=\"hash\">{}</dd>",
                esc(&c.file),
                count(&format!("{gid}-checkpoint-size"), c.size),
                esc(&c.root_hex),
                esc(&c.root_hex),
                esc(&c.origin),
                esc(&c.key_id),
                esc(&c.key_id),
                c.public_key
                    .as_deref()
                    .map(esc)
                    .unwrap_or_else(|| "(not at hand: ask the operator for <code>gapless audit pubkey</code>)".into()),
            );
        }
        None => out.push_str(
            "<dt>Checkpoint</dt><dd class=\"bad\">none yet: nothing is signed, nothing can be verified</dd>\n",
        ),
    }
    out.push_str("<dt>Cosignatures</dt><dd>");
    if v.cosignatures.is_empty() {
        out.push_str("none: no witness has cosigned this checkpoint");
    } else {
        for c in &v.cosignatures {
            let _ = write!(
                out,
                "<div class=\"cosig\" data-witness=\"{}\" data-size=\"{}\">{} · key id <code>{}</code> · \
                 cosigned the tree of {} entries (every file below with a ledger # under {}){} · \
                 check it with the witness's key: <code>gapless audit verify --witness KEY</code></div>",
                esc(&c.witness),
                c.size,
                esc(&c.witness),
                esc(&c.key_id),
                c.size,
                c.size,
                c.signed_at
                    .as_deref()
                    .map(|t| format!(" · cosigned {}", esc(t)))
                    .unwrap_or_default(),
            );
        }
    }
    out.push_str("</dd>\n</dl>\n");
    let _ = writeln!(
        out,
        "<div class=\"how\"><h3>Check it yourself</h3><ol>\
         <li>Get the ledger's public key from the operator, out of band: <code>gapless audit pubkey --data {data} &gt; gapless.pub</code></li>\
         <li>Recompute every file hash, row hash and the signed tree: <code>gapless audit verify --data {data} --pubkey gapless.pub</code></li>\
         <li>The same without gapless (Python): <code>python3 tools/verify_audit.py {data} gapless.pub</code></li>\
         <li>Keep the checkpoint below as <code>checkpoint.txt</code>; later, <code>gapless audit consistency --data {data} --old checkpoint.txt --pubkey gapless.pub</code> proves nothing was removed or rewritten since.</li>\
         <li>{}: <code>gapless report --data {data} --registry REGISTRY.csv --from {} --to {} --format html{}</code></li>\
         </ol>",
        if g.group.is_some() {
            "Recompute this page"
        } else {
            "Recompute these pages (every group; meters without one last)"
        },
        format_micros(cert.window.from),
        format_micros(cert.window.to),
        g.group
            .as_deref()
            .map(|n| format!(" --group {}", esc(&shell_word(n))))
            .unwrap_or_default(),
    );
    if let Some(c) = &v.checkpoint {
        let _ = write!(
            out,
            "<h3>The signed checkpoint (C2SP signed note)</h3><pre class=\"note-text\">{}</pre>",
            esc(c.note.trim_end())
        );
    }
    out.push_str("</div>\n</div>\n");
    let covered_by = v.checkpoint.as_ref().map(|c| c.size);
    let _ = writeln!(
        out,
        "<h3>Files this certificate rests on ({})</h3>\n<p class=\"small\">The sealed readings files that hold \
         this group's readings from its earliest opening reading on{}, with the SHA-256 the ledger records for each.</p>\n\
         <table class=\"files\"><thead><tr><th class=\"num\">Ledger #</th><th>File</th><th class=\"num\">Rows</th>\
         <th>SHA-256</th></tr></thead><tbody>",
        count(&format!("{gid}-files"), (g.files.len() + cert.report_files.len()) as u64),
        if cert.report_files.is_empty() {
            ""
        } else {
            ", and the report file written with these numbers"
        },
    );
    // A page per group: past a few files, the rest is named by count
    // (the ledger records every one, and `audit verify` checks them).
    for f in g.files.iter().take(FILES_LISTED).chain(&cert.report_files) {
        file_row(out, f, covered_by);
    }
    let more = g.files.len().saturating_sub(FILES_LISTED);
    if more > 0 {
        let _ = writeln!(
            out,
            "<tr class=\"more\" id=\"{gid}-files-more\" data-more=\"{more}\"><td></td><td colspan=\"3\">and {more} more sealed \
             files (the ledger records each with its SHA-256; \
             <code>gapless audit verify</code> checks all)</td></tr>"
        );
    }
    out.push_str("</tbody></table>\n");
    out.push_str("</div>\n");
}

/// The certificate document, rendered: what `gapless report --format
/// html` prints and `GET /api/v1/certificate` returns.
pub(crate) fn document(
    data: &Path,
    stored: &StoredReadings,
    ctx: &Context,
    window: Window,
    req: CertificateRequest,
    generated_at: i64,
) -> Result<String, CertificateError> {
    let cert = super::certificate::certificate(data, stored, ctx, window, &req, generated_at)?;
    Ok(render(&cert))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sanitised_and_unique_and_text_is_escaped() {
        let g = |name: Option<&str>| GroupCertificate {
            group: name.map(str::to_owned),
            summary: Default::default(),
            verdicts: [0; 3],
            rows: Vec::new(),
            files: Vec::new(),
        };
        let mut used = HashSet::new();
        assert_eq!(
            unique_id(group_id(&g(Some("Haus 7/a"))), &mut used),
            "g-Haus_7_a"
        );
        assert_eq!(
            unique_id(group_id(&g(Some("Haus 7:a"))), &mut used),
            "g-Haus_7_a-2"
        );
        assert_eq!(unique_id(group_id(&g(None)), &mut used), "ungrouped");
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(shell_word("gw-0001"), "gw-0001");
        assert_eq!(shell_word("Haus 7's"), "'Haus 7'\\''s'");
    }
}
