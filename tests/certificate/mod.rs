//! The outage certificate (`report --format html`, `/api/v1/certificate`)
//! and `demo --serve`, with the real binary, the real broker and a real
//! browser: the page prints in headless Chromium to a PDF of one A4 page
//! per group (Debian's `chromium`, then poppler's `pdfinfo`, `pdftoppm`
//! and `pdftotext`), and every number it shows (by id and `data-value`)
//! is the one `/api/v1/report` returns for the same window. The PDF and
//! its pages are kept under the target directory's `test-artifacts/`.
//! `demo --serve` is run as a user would: its printed link is opened in
//! the browser, and what it serves is what `gapless report` says.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest as _;

use crate::support::*;

const TOKEN: &str = "cert-token-5c1e";
const FROM: &str = "2022-07-25T00:00:00Z";
const TO: &str = "2022-07-26T00:00:00Z";

/// A tool the test needs: fails (never skips) naming the package.
fn tool(name: &str, env: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin").join(name));
    assert!(
        path.exists(),
        "the certificate test prints the page with {name}, and {} does not exist. \
         Install it: `apt-get install -y --no-install-recommends {package}` (or set {env}).",
        path.display()
    );
    path
}

fn chromium() -> PathBuf {
    tool("chromium", "GAPLESS_CHROMIUM", "chromium")
}

fn poppler(name: &str) -> PathBuf {
    tool(
        name,
        &format!("GAPLESS_{}", name.to_uppercase()),
        "poppler-utils",
    )
}

/// Runs a tool to its end; its stdout.
fn run(mut cmd: Command, what: &str) -> String {
    let (status, out, err) = run_to_end(
        {
            cmd.stdin(Stdio::null());
            cmd
        },
        Duration::from_secs(120),
        what,
    );
    assert!(status.success(), "{what} failed ({status}):\n{err}");
    out
}

/// Prints `html` to `pdf` in headless Chromium (A4 from the page's own
/// `@page`, no header or footer lines of the browser's).
fn print_to_pdf(html: &Path, pdf: &Path, profile: &Path) {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-pdf-header-footer",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--print-to-pdf={}", pdf.display()))
    .arg(format!("file://{}", html.display()));
    run(cmd, "chromium --print-to-pdf");
    assert!(pdf.exists(), "chromium wrote no PDF");
}

fn pdf_pages(pdf: &Path) -> usize {
    let mut cmd = Command::new(poppler("pdfinfo"));
    cmd.arg(pdf);
    let info = run(cmd, "pdfinfo");
    assert!(info.contains("(A4)"), "not A4: {info}");
    info.lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("pdfinfo says no page count: {info}"))
}

fn page_text(pdf: &Path, page: usize) -> String {
    let mut cmd = Command::new(poppler("pdftotext"));
    let p = page.to_string();
    cmd.args(["-layout", "-f", &p, "-l", &p]).arg(pdf).arg("-");
    run(cmd, "pdftotext")
}

/// Renders every page as `PREFIX-N.png`; their paths, in page order.
fn render_pages(pdf: &Path, prefix: &Path) -> Vec<PathBuf> {
    let mut cmd = Command::new(poppler("pdftoppm"));
    cmd.args(["-r", "70", "-png"]).arg(pdf).arg(prefix);
    run(cmd, "pdftoppm");
    let dir = prefix.parent().unwrap();
    let stem = prefix.file_name().unwrap().to_string_lossy().into_owned();
    let mut pages: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name()?.to_str()?.to_owned();
            let n = name
                .strip_prefix(&format!("{stem}-"))?
                .strip_suffix(".png")?
                .parse()
                .ok()?;
            Some((n, p))
        })
        .collect();
    pages.sort();
    pages.into_iter().map(|(_, p)| p).collect()
}

/// The attribute `attr` of the element with `id="id"`.
fn attr_of(html: &str, id: &str, attr: &str) -> Option<String> {
    let at = html.find(&format!(" id=\"{id}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let key = format!(" {attr}=\"");
    let i = tag.find(&key)? + key.len();
    let j = tag[i..].find('"')?;
    Some(tag[i..i + j].replace("&amp;", "&").replace("&quot;", "\""))
}

/// Every `id` with a `data-value` in the page.
fn numbers(html: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (i, _) in html.match_indices(" id=\"") {
        let id_start = i + 5;
        let id = &html[id_start..id_start + html[id_start..].find('"').unwrap()];
        if let Some(v) = attr_of(html, id, "data-value") {
            out.insert(id.to_owned(), v);
        }
    }
    out
}

/// The `<section>`s of the page: (data-group, id, its HTML).
fn sections(html: &str) -> Vec<(String, String, &str)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<section class=\"cert\" id=\"") {
        let tag_end = i + rest[i..].find('>').unwrap();
        let tag = &rest[i..tag_end];
        let attr = |a: &str| {
            let k = format!(" {a}=\"");
            let s = tag.find(&k).unwrap() + k.len();
            tag[s..s + tag[s..].find('"').unwrap()].to_owned()
        };
        let end = tag_end + rest[tag_end..].find("</section>").unwrap();
        out.push((attr("data-group"), attr("id"), &rest[i..end]));
        rest = &rest[end..];
    }
    out
}

/// What the certificate must say of a report row: lost without a reading
/// on each side; provable with an exact figure and no anomaly; else
/// estimable.
fn verdict(r: &Value) -> &'static str {
    if r["opening_value"].is_null() || r["closing_value"].is_null() {
        "lost"
    } else if !r["consumption"].is_null()
        && r["consumption_exact"] == true
        && r["status"] != "anomalous"
    {
        "provable"
    } else {
        "estimable"
    }
}

/// Two buildings and a meter of none, around 2022-07-25:
/// building-7: W-1 complete, W-2 misses 08:00..12:00 (bridged, provable),
/// H-1 silent from 18:30 (open, lost); building-9: H-3's register goes down
/// at 10:00 (anomalous), HKV-1 read daily, WW-1 replaced at 12:00 (its new
/// register starts at 0: estimable), NEVER-1 never heard (silent, lost);
/// no group: H-2, silent since the day before.
const REGISTRY: &str = "meter_id,medium,expected_interval_s,group,installed_at,removed_at
W-1,water,3600,building-7,,
W-2,water,3600,building-7,,
H-1,heat,900,building-7,,
H-3,heat,900,building-9,,
HKV-1,hca,86400,building-9,,
WW-1,warm_water,3600,building-9,,2022-07-25T12:00:00Z
WW-1,warm_water,3600,building-9,2022-07-25T12:00:00Z,
NEVER-1,water,3600,building-9,,
";

fn get(port: u16, path: &str, token: &str) -> (u16, String) {
    http_get(port, path, Some(token))
}

/// What every group's section says against the report's rows of that
/// group: the summary, the verdicts, and each register's readings.
fn check_against_report(html: &str, rows: &[Value]) -> usize {
    let mut checked = 0;
    let mut groups: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in rows {
        groups
            .entry(r["group"].as_str().unwrap_or("").to_owned())
            .or_default()
            .push(r);
    }
    let secs = sections(html);
    assert_eq!(
        secs.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        {
            // Named groups in order, the meters of none last.
            let mut g: Vec<String> = groups.keys().filter(|k| !k.is_empty()).cloned().collect();
            if groups.contains_key("") {
                g.push(String::new());
            }
            g
        },
        "one section per group"
    );
    for (group, gid, sec) in &secs {
        let of = &groups[group];
        let n = |k: &str| -> u64 {
            attr_of(sec, &format!("{gid}-{k}"), "data-value")
                .unwrap_or_else(|| panic!("{gid}: no #{gid}-{k}"))
                .parse()
                .unwrap()
        };
        let count = |f: &dyn Fn(&Value) -> bool| of.iter().filter(|r| f(r)).count() as u64;
        let sum = |k: &str| of.iter().map(|r| r[k].as_u64().unwrap()).sum::<u64>();
        assert_eq!(n("meters"), of.len() as u64, "{gid}");
        for st in ["complete", "bridged", "open", "silent", "anomalous"] {
            assert_eq!(n(st), count(&|r| r["status"] == st), "{gid} {st}");
        }
        for k in ["expected", "received", "late", "missing"] {
            assert_eq!(n(k), sum(k), "{gid} {k}");
        }
        for v in ["provable", "estimable", "lost"] {
            assert_eq!(n(v), count(&|r| verdict(r) == v), "{gid} {v}");
        }
        for r in of {
            let base = format!(
                "{gid}/{}/{}",
                r["meter_id"].as_str().unwrap(),
                r["register"].as_str().unwrap_or("-")
            );
            let shown = |f: &str| attr_of(sec, &format!("{base}/{f}"), "data-value");
            let text = |v: &Value| v.as_str().map(str::to_owned);
            assert_eq!(shown("opening_value"), text(&r["opening_value"]), "{base}");
            assert_eq!(shown("opening_ts"), text(&r["opening_ts"]), "{base}");
            assert_eq!(shown("closing_value"), text(&r["closing_value"]), "{base}");
            assert_eq!(shown("closing_ts"), text(&r["closing_ts"]), "{base}");
            assert_eq!(shown("consumption"), text(&r["consumption"]), "{base}");
            for k in ["expected", "received", "missing"] {
                assert_eq!(shown(k), Some(r[k].to_string()), "{base} {k}");
            }
            assert_eq!(shown("verdict").as_deref(), Some(verdict(r)), "{base}");
            assert_eq!(
                attr_of(sec, &base, "data-status").as_deref(),
                r["status"].as_str(),
                "{base}"
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn the_certificate_prints_a_page_per_group_with_the_reports_numbers() {
    // Fail first, and clearly, without the tools.
    chromium();
    for t in ["pdfinfo", "pdftoppm", "pdftotext"] {
        poppler(t);
    }
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let registry = tmp.path().join("registry.csv");
    std::fs::write(&registry, REGISTRY).unwrap();
    let reg = registry.display().to_string();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // Small seals: many files, so that each page lists three and counts the
    // rest (and the page count does not depend on how the seals fell).
    let mut g = Gapless::start_env(
        &broker.url(),
        &data,
        &["--http", &addr, "--registry", &reg, "--seal-max-rows", "20"],
        &[("GAPLESS_API_TOKEN", TOKEN)],
    );
    let msgs = known_day(true);
    publish_all(broker.port, &msgs);
    g.wait_readings(msgs.len() as u64, Duration::from_secs(120));
    // A seal's checkpoint comes a moment after its commit: wait for it, so
    // that every file the certificate lists is under its checkpoint.
    let count_json = |dir: &str, ext: &str| {
        std::fs::read_dir(data.join(dir))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == ext)
            })
            .count()
    };
    wait_for(
        "a checkpoint of every ledger entry",
        Duration::from_secs(30),
        || {
            let newest = std::fs::read_dir(data.join("_ledger/checkpoints"))
                .unwrap()
                .filter_map(|e| {
                    let name = e.unwrap().file_name().into_string().ok()?;
                    name.strip_suffix(".txt")?.parse::<usize>().ok()
                })
                .max();
            (newest == Some(count_json("_ledger/entries", "json"))).then_some(())
        },
    );

    let window = format!("from={FROM}&to={TO}");
    let (st, body) = get(port, &format!("/api/v1/report?{window}&limit=10000"), TOKEN);
    assert_eq!(st, 200, "{body}\n{}", g.log_text());
    let report: Value = serde_json::from_str(&body).unwrap();
    let rows = report["meters"].as_array().unwrap().clone();
    let verdicts: BTreeMap<&str, &str> = rows
        .iter()
        .map(|r| (r["meter_id"].as_str().unwrap(), verdict(r)))
        .collect();
    assert_eq!(
        verdicts,
        BTreeMap::from([
            ("H-1", "lost"),
            ("H-2", "lost"),
            ("H-3", "estimable"),
            ("HKV-1", "provable"),
            ("NEVER-1", "lost"),
            ("W-1", "provable"),
            ("W-2", "provable"),
            ("WW-1", "estimable"),
        ]),
        "the data set has every verdict: {report}"
    );

    // The API's certificate: every group, each number the report's.
    let q = format!("/api/v1/certificate?{window}");
    assert_eq!(http_get(port, &q, None).0, 401);
    let (st, html) = get(port, &q, TOKEN);
    assert_eq!(st, 200, "{html}");
    std::fs::write(artifacts_dir().join("certificate.html"), &html).unwrap();
    assert_eq!(check_against_report(&html, &rows), rows.len());
    // Self-contained: one style, no script, nothing fetched from anywhere.
    assert_eq!(html.matches("<style>").count(), 1);
    for banned in [
        "<script", "http://", "https://", " src=", "url(", "<link", "<img",
    ] {
        assert!(!html.contains(banned), "the page has {banned:?}");
    }
    // One group, and a group that is not there.
    let (st, one) = get(port, &format!("{q}&group=building-7"), TOKEN);
    assert_eq!(st, 200, "{one}");
    let secs = sections(&one);
    assert_eq!(secs.len(), 1);
    assert_eq!(secs[0].0, "building-7");
    let (st, body) = get(port, &format!("{q}&group=building-99"), TOKEN);
    assert_eq!(st, 400);
    assert!(body.contains("parameter group"), "{body}");
    let (st, body) = get(port, &format!("{q}&status=lost"), TOKEN);
    assert_eq!(st, 400);
    assert!(body.contains("parameter status"), "{body}");

    // The verification box: the newest checkpoint, as its file says, and
    // the files with the SHA-256 of their bytes.
    let checkpoints = data.join("_ledger/checkpoints");
    let newest = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let note = std::fs::read_to_string(&newest).unwrap();
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    let root = {
        use base64::Engine as _;
        hex::encode(
            base64::engine::general_purpose::STANDARD
                .decode(note.lines().nth(2).unwrap())
                .unwrap(),
        )
    };
    let mut counted = 0;
    for (_, gid, sec) in sections(&html) {
        let v = |id: &str| attr_of(sec, &format!("{gid}-{id}"), "data-value").unwrap();
        assert_eq!(v("checkpoint-size"), size.to_string(), "{gid}");
        assert_eq!(v("checkpoint-root"), root, "{gid}");
        assert!(sec.contains("signature verified"), "{gid}");
        assert!(sec.contains(&format!("gapless audit verify --data {}", data.display())));
        let mut files = 0;
        for (i, _) in sec.match_indices("<tr data-path=\"") {
            let tag = &sec[i..i + sec[i..].find('>').unwrap()];
            let attr = |a: &str| {
                let k = format!(" {a}=\"");
                let s = tag.find(&k).unwrap() + k.len();
                tag[s..s + tag[s..].find('"').unwrap()].to_owned()
            };
            let path = attr("data-path");
            assert!(path.starts_with("readings/"), "{path}");
            let bytes = std::fs::read(data.join(&path)).unwrap();
            assert_eq!(
                attr("data-sha256"),
                hex::encode(sha2::Sha256::digest(&bytes))
            );
            assert!(attr("data-ledger-index").parse::<u64>().unwrap() < size);
            files += 1;
        }
        assert!(files > 0, "{gid} rests on no file");
        // Past three, the rest of the files are counted, not listed.
        let more: usize = attr_of(sec, &format!("{gid}-files-more"), "data-more")
            .map_or(0, |m| m.parse().unwrap());
        assert!(files <= 3 || more == 0, "{gid}: {files} listed");
        counted += more;
        assert_eq!(v("files"), (files + more).to_string(), "{gid}");
    }
    assert!(counted > 0, "no page counted files past the three it lists");
    // What the box tells a reader to run holds.
    let d = data.display().to_string();
    let (code, out, err) =
        run_gapless(&["audit", "verify", "--data", &d], Duration::from_secs(120));
    assert_eq!(code, 0, "{out}{err}");

    // The CLI's certificate: the same numbers (it also lists the report
    // file it wrote, under a newer checkpoint).
    let cli = |extra: &[&str]| {
        let mut args = vec![
            "report",
            "--data",
            &d,
            "--registry",
            &reg,
            "--from",
            FROM,
            "--to",
            TO,
        ];
        args.extend_from_slice(extra);
        run_gapless(&args, Duration::from_secs(120))
    };
    let (code, cli_html, err) = cli(&["--format", "html"]);
    assert_eq!(code, 0, "{err}");
    let meter_numbers = |h: &str| {
        let mut n = numbers(h);
        n.retain(|k, _| !k.contains("-checkpoint-") && !k.ends_with("-files"));
        n
    };
    assert_eq!(meter_numbers(&cli_html), meter_numbers(&html));
    assert!(
        meter_numbers(&html).len() > 50,
        "{:?}",
        meter_numbers(&html)
    );
    assert!(cli_html.contains("<tr data-path=\"reports/report_"));
    let reports = || std::fs::read_dir(data.join("reports")).unwrap().count();
    let before = reports();
    let (code, _, err) = cli(&["--format", "html", "--group", "building-99"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--group"), "{err}");
    assert_eq!(reports(), before, "a wrong --group writes no report");
    let (code, _, err) = cli(&["--format", "json", "--group", "building-7"]);
    assert_eq!(code, 2, "{err}");

    // In a real browser: one A4 page per group, each page its group's.
    let file = tmp.path().join("certificate.html");
    std::fs::write(&file, &html).unwrap();
    let pdf = artifacts_dir().join("certificate.pdf");
    let _ = std::fs::remove_file(&pdf);
    let started = Instant::now();
    print_to_pdf(&file, &pdf, &tmp.path().join("chromium-profile"));
    let print_ms = started.elapsed().as_millis();
    let titles = [
        "Group building-7",
        "Group building-9",
        "Meters without a group",
    ];
    assert_eq!(pdf_pages(&pdf), titles.len(), "one page per group");
    for (i, title) in titles.iter().enumerate() {
        let text = page_text(&pdf, i + 1);
        assert!(
            text.contains(title),
            "page {} is not {title}:\n{text}",
            i + 1
        );
        assert!(text.contains("Verification"), "page {}:\n{text}", i + 1);
        assert!(text.contains("Exactly provable"), "page {}:\n{text}", i + 1);
    }
    let prefix = artifacts_dir().join("certificate-page");
    for old in render_pages(&pdf, &prefix) {
        std::fs::remove_file(old).unwrap();
    }
    let pages = render_pages(&pdf, &prefix);
    assert_eq!(pages.len(), titles.len());
    for p in &pages {
        let png = std::fs::read(p).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", p.display());
    }
    println!(
        "certificate: {} groups, {} registers; printed by Chromium in {print_ms} ms; {} and {}",
        titles.len(),
        rows.len(),
        pdf.display(),
        pages[0].display()
    );
    assert_eq!(g.terminate(), Some(0));
}

#[test]
fn demo_serve_serves_its_data_with_the_token_it_prints() {
    chromium(); // the printed link is opened in a browser: fail first without one
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let d = data.display().to_string();
    // 400 meters: four gateways, one of each kind (healthy, buffering,
    // lossy, dead).
    let mut child = Command::new(GAPLESS)
        .args(["demo", "--meters", "400", "--data", &d, "--serve", "--http"])
        .arg("127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut out = String::new();
    let url = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                out.push_str(&line);
                out.push('\n');
                if let Some(u) = line.trim().strip_prefix("http://") {
                    if u.contains("/#token=") {
                        break u.to_owned();
                    }
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("demo --serve printed no dashboard link:\n{out}");
            }
        }
    };
    // 127.0.0.1:PORT/#token=T&from=F&to=T2
    let (hostport, fragment) = url.split_once("/#").unwrap();
    let port: u16 = hostport.rsplit_once(':').unwrap().1.parse().unwrap();
    assert_ne!(port, 0, "the real port is printed");
    let frag: BTreeMap<&str, &str> = fragment
        .split('&')
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let (token, from, to) = (frag["token"], frag["from"], frag["to"]);
    assert!(token.len() >= 32, "a generated token: {token}");
    assert_eq!((from, to), ("2022-07-23T00:00:00Z", "2022-07-24T00:00:00Z"));

    // The dashboard, and the API with that token only.
    let (st, page) = http_get(port, "/", None);
    assert_eq!(st, 200);
    assert!(page.contains("<script>"), "the dashboard");
    let q = format!("/api/v1/report?from={from}&to={to}&limit=10000");
    assert_eq!(http_get(port, &q, Some("wrong")).0, 401);
    let (st, body) = get(port, &q, token);
    assert_eq!(st, 200, "{body}");
    let api: Value = serde_json::from_str(&body).unwrap();

    // `gapless report` on the same directory says the same.
    let registry = data.join("registry.csv").display().to_string();
    let (code, cli, err_text) = run_gapless(
        &[
            "report",
            "--data",
            &d,
            "--registry",
            &registry,
            "--from",
            from,
            "--to",
            to,
            "--format",
            "json",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(code, 0, "{err_text}");
    let cli: Value = serde_json::from_str(&cli).unwrap();
    assert_eq!(api["summary"], cli["summary"]);
    assert_eq!(api["meters"], cli["meters"]);
    let s = &api["summary"];
    assert_eq!(s["meters"], 403, "400 meters and 3 never heard: {s}");
    for st in ["bridged", "silent", "complete"] {
        assert!(s[st].as_u64() > Some(0), "the outage shows {st}: {s}");
    }

    // One click: the printed link, in a browser, shows the outage's
    // coverage picture with the report's numbers.
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--window-size=1400,1500",
        "--virtual-time-budget=20000",
        "--dump-dom",
    ])
    .arg(format!(
        "--user-data-dir={}",
        tmp.path().join("chromium-profile").display()
    ))
    .arg(format!("http://{url}"));
    let dom = run(cmd, "chromium --dump-dom");
    let body = &dom[dom.find("<body").expect("a page")..];
    assert!(
        body[..body.find('>').unwrap()].contains("data-state=\"loaded\""),
        "the dashboard did not load from the printed link: {}",
        &body[..body.len().min(2000)]
    );
    assert_eq!(
        attr_of(&dom, "coverage", "data-total"),
        Some(s["meters"].to_string()),
        "the coverage picture has every series"
    );
    for field in ["meters", "bridged", "silent", "missing"] {
        assert_eq!(
            attr_of(&dom, &format!("sum-{field}"), "data-value"),
            Some(s[field].to_string()),
            "the dashboard's {field}"
        );
    }

    // The certificate the demo points to (printed after the link).
    let cert_url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no certificate example printed:\n{out}"));
        out.push_str(&line);
        out.push('\n');
        if let Some(u) = line
            .split('\'')
            .find(|p| p.starts_with("http://") && p.contains("/api/v1/certificate?"))
        {
            break u.to_owned();
        }
    };
    let cert_path = &cert_url[cert_url.find("/api/").unwrap()..];
    let (st, html) = get(port, cert_path, token);
    assert_eq!(st, 200, "{cert_path}: {html}");
    assert_eq!(sections(&html).len(), 1);
    let group = sections(&html)[0].0.clone();
    assert!(
        cert_path.ends_with(&format!("&group={group}")),
        "{cert_path}"
    );
    let rows: Vec<Value> = api["meters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["group"].as_str() == Some(group.as_str()))
        .cloned()
        .collect();
    assert_eq!(check_against_report(&html, &rows), rows.len());

    // It serves until SIGTERM, then exits 0 (every reading stored once).
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("demo --serve did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err_text = err.join().unwrap();
    assert_eq!(status.code(), Some(0), "{err_text}");
    assert!(err_text.contains("counters balance"), "{err_text}");
}
