//! The operators' kit (`tools/ops/`) against the real tools and the real
//! service: `promtool` checks and unit-tests the alert rules and parses the
//! dashboard's queries; every gapless metric the rules and the dashboard
//! name is exported by a running service's /metrics; the systemd unit
//! passes `systemd-analyze verify` and `security`; the test broker runs the
//! kit's `mosquitto.conf`, and the unit's system call filter lets a
//! traced `serve` do all it does (`syscalls.rs`). Progress of long
//! commands: `progress.rs`.

mod progress;
mod syscalls;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;

use crate::support::*;

const KIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/ops");

/// Metrics the rules name that come with a feature this build may not have
/// yet, each with the `serve` flag that brings it: without the flag the
/// metric may be missing; with it, it must be exported like any other.
const WITH_FEATURE: &[(&str, &str)] = &[("gapless_witness_failures_total", "--witness")];

pub(crate) fn kit(file: &str) -> PathBuf {
    Path::new(KIT).join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `name` on the PATH (or in /usr/sbin, /sbin), else a failure naming the
/// Debian package to install: never a skip.
pub(crate) fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: apt-get install {package} (Debian's `{package}` package)"
            )
        })
}

/// Runs `cmd` to its end: (success, stdout, stderr).
fn run(cmd: &mut Command, what: &str) -> (bool, String, String) {
    // run_to_end takes the command by value; the builders here lend it.
    let cmd = std::mem::replace(cmd, Command::new("true"));
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(120), what);
    (status.success(), out, err)
}

fn promtool() -> PathBuf {
    tool("promtool", "prometheus")
}

#[test]
fn promtool_checks_the_alert_rules_and_the_scrape_config() {
    let (ok, out, err) = run(
        Command::new(promtool())
            .args(["check", "rules"])
            .arg(kit("gapless.rules.yml")),
        "promtool check rules",
    );
    assert!(ok, "promtool check rules:\n{out}{err}");
    assert!(out.contains("SUCCESS"), "{out}");
    // The example prometheus.yml, and the rules it loads.
    let (ok, out, err) = run(
        Command::new(promtool())
            .args(["check", "config"])
            .arg(kit("prometheus.yml")),
        "promtool check config",
    );
    assert!(ok, "promtool check config:\n{out}{err}");
    assert!(out.contains("1 rule files found"), "{out}");
    // The rules' job labels are the example's job names.
    let config = read(&kit("prometheus.yml"));
    let rules = read(&kit("gapless.rules.yml"));
    for job in ["gapless", "node"] {
        assert!(config.contains(&format!("job_name: {job}\n")), "{config}");
        assert!(
            rules.contains(&format!("job=\"{job}\"")),
            "no job={job} in the rules"
        );
    }
}

/// `gapless.rules.test.yml`: each alert fires on its failure, when its
/// `for` allows, and none on a healthy hour.
#[test]
fn promtool_unit_tests_of_the_alert_rules_pass() {
    let (ok, out, err) = run(
        Command::new(promtool())
            .args(["test", "rules", "gapless.rules.test.yml"])
            .current_dir(KIT),
        "promtool test rules",
    );
    assert!(ok, "promtool test rules:\n{out}{err}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every string of the dashboard JSON, with the key it is under.
fn strings<'a>(v: &'a serde_json::Value, key: &'a str, out: &mut Vec<(&'a str, &'a str)>) {
    match v {
        serde_json::Value::String(s) => out.push((key, s)),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, key, out)),
        serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| strings(x, k, out)),
        _ => {}
    }
}

fn dashboard() -> serde_json::Value {
    let path = kit("grafana-dashboard.json");
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The dashboard's queries, as PromQL (Grafana's variables replaced).
fn dashboard_queries() -> Vec<String> {
    let d = dashboard();
    let mut all = Vec::new();
    strings(&d, "", &mut all);
    all.into_iter()
        .filter(|(k, _)| *k == "expr")
        .map(|(_, e)| {
            e.replace("$__rate_interval", "5m")
                .replace("$instance", ".*")
        })
        .collect()
}

/// Every dashboard query parses as PromQL: promtool checks them as
/// recording rules.
#[test]
fn the_dashboards_queries_are_valid_promql() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        // A JSON string is a YAML double-quoted scalar.
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(q).unwrap()
        ));
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("dashboard.rules.yml");
    std::fs::write(&file, rules).unwrap();
    let (ok, out, err) = run(
        Command::new(promtool()).args(["check", "rules"]).arg(&file),
        "promtool check rules (dashboard)",
    );
    assert!(ok, "a dashboard query is not PromQL:\n{out}{err}");

    // Each panel but the rows shows something, from the chosen data source.
    let d = dashboard();
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate id: {p}");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().map_or(0, Vec::len);
        assert!(targets > 0, "panel {} has no query", p["title"]);
    }
}

/// A gapless metric named in a query, with the `label="value"` matchers it
/// is selected by.
#[derive(Debug)]
struct Selector {
    name: String,
    labels: Vec<(String, String)>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every `gapless_*` name in `text`, with its equality matchers.
fn gapless_selectors(text: &str) -> Vec<Selector> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("gapless_").map(|i| i + from) {
        from = i + 1;
        if text[..i].chars().next_back().is_some_and(is_name_char) {
            continue;
        }
        let end = text[i..]
            .find(|c| !is_name_char(c))
            .map_or(text.len(), |e| e + i);
        let name = text[i..end].to_owned();
        let mut labels = Vec::new();
        if text[end..].starts_with('{') {
            let close = text[end..].find('}').expect("unclosed {") + end;
            for m in text[end + 1..close].split(',') {
                // Only `=` matchers: `=~`, `!=` and `!~` select no one value.
                if let Some((k, v)) = m.split_once('=') {
                    let (k, v) = (k.trim(), v.trim());
                    if !k.ends_with('!') && v.starts_with('"') {
                        labels.push((k.to_owned(), v.trim_matches('"').to_owned()));
                    }
                }
            }
        }
        out.push(Selector { name, labels });
    }
    out
}

/// The samples of a Prometheus text exposition: name -> label sets (as
/// written between the braces).
fn samples(exposition: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, _value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        out.entry(name.to_owned())
            .or_default()
            .push(labels.to_owned());
    }
    out
}

/// Every gapless metric the rules and the dashboard select, with every
/// label value they select it by, is in a running service's /metrics.
#[test]
fn every_gapless_metric_of_the_rules_and_the_dashboard_is_exported() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _g = Gapless::start_env(
        &broker.url(),
        &tmp.path().join("data"),
        &["--http", &addr],
        &[("GAPLESS_API_TOKEN", "ops-test-token")],
    );
    let exposition = wait_for("/metrics", Duration::from_secs(30), || {
        let (status, body) = http_get(port, "/metrics", None);
        (status == 200).then_some(body)
    });
    let exported = samples(&exposition);
    assert!(exported.len() >= 10, "{exposition}");

    let mut used = Vec::new();
    let rules = read(&kit("gapless.rules.yml"));
    used.extend(gapless_selectors(&rules).into_iter().map(|s| ("rules", s)));
    let d = dashboard();
    let mut all = Vec::new();
    strings(&d, "", &mut all);
    for (_, s) in all {
        used.extend(gapless_selectors(s).into_iter().map(|s| ("dashboard", s)));
    }
    assert!(used.len() >= 20, "{used:?}");

    let (ok, help, err) = run(
        Command::new(GAPLESS).args(["serve", "--help"]),
        "gapless serve --help",
    );
    assert!(ok, "{err}");
    let (mut problems, mut unchecked) = (Vec::new(), BTreeSet::new());
    for (file, sel) in &used {
        let feature = WITH_FEATURE.iter().find(|(n, _)| *n == sel.name);
        if let Some((_, flag)) = feature {
            if !help.split_whitespace().any(|w| w == *flag) && !exported.contains_key(&sel.name) {
                if unchecked.insert(&sel.name) {
                    eprintln!(
                        "{file}: {} not checked: this build has no serve {flag}",
                        sel.name
                    );
                }
                continue;
            }
        }
        let Some(label_sets) = exported.get(&sel.name) else {
            problems.push(format!("{file}: {} is not in /metrics", sel.name));
            continue;
        };
        for (k, v) in &sel.labels {
            let pair = format!("{k}=\"{v}\"");
            if !label_sets.iter().any(|l| l.contains(&pair)) {
                problems.push(format!(
                    "{file}: /metrics has no {}{{{pair}}} (it has {label_sets:?})",
                    sel.name
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n/metrics:\n{exposition}",
        problems.join("\n")
    );
}

/// The settings the README names for a deployment's broker: without them
/// Mosquitto drops or forgets messages for an offline gapless.
const REQUIRED_BROKER_SETTINGS: &[&str] = &[
    "persistence true",
    "max_queued_messages 0",
    "max_queued_bytes 0",
    "max_inflight_messages 0",
];

/// The Mosquitto settings the docs name: in the README's "**The broker.**"
/// paragraph, each `directive value` in backticks; in schemas/serve.md,
/// the lines of its `conf` block.
fn documented_broker_settings() -> Vec<(&'static str, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = read(&root.join("README.md"));
    let para = readme
        .split("\n\n")
        .find(|p| p.starts_with("**The broker.**"))
        .expect("README.md has no \"**The broker.**\" paragraph");
    // Mosquitto's directives are lower_snake; EMQX's and HiveMQ's are not.
    let in_readme: Vec<String> = para
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            let mut w = s.split(' ');
            let (d, v) = (w.next().unwrap_or_default(), w.next());
            w.next().is_none()
                && v.is_some()
                && d.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .map(str::to_owned)
        .collect();
    assert!(in_readme.len() >= 3, "{para}");
    let conf_block = |doc: &str| -> Vec<String> {
        let text = read(&root.join(doc));
        let block = text
            .split("```conf\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .unwrap_or_else(|| panic!("{doc} has no ```conf block"));
        let lines: Vec<String> = block
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default().trim())
            .filter(|l| !l.is_empty())
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert!(lines.len() >= 3, "{doc}: {block}");
        lines
    };
    vec![
        ("README.md", in_readme),
        ("schemas/serve.md", conf_block("schemas/serve.md")),
        ("tools/ops/README.md", conf_block("tools/ops/README.md")),
    ]
}

/// The `gapless` commands of tools/ops/README.md (its install steps are
/// not run: they need root and systemd) parse with the real CLI.
#[test]
fn the_kits_readme_commands_parse() {
    let text = read(&kit("README.md"));
    let mut checked = 0;
    for line in text.lines() {
        let line = line.trim();
        let Some(cmd) = line
            .strip_prefix("sudo gapless ")
            .or_else(|| line.strip_prefix("gapless "))
        else {
            continue;
        };
        let cmd = cmd.split(" > ").next().unwrap_or_default();
        let argv = std::iter::once("gapless").chain(cmd.split_whitespace());
        if let Err(e) = gapless::cli::Cli::try_parse_from(argv) {
            panic!("tools/ops/README.md: `{line}` does not parse:\n{e}");
        }
        checked += 1;
    }
    assert!(checked >= 1, "no gapless command in tools/ops/README.md");
}

/// The kit's `mosquitto.conf` has the required settings, outside its site
/// section, and the integration tests' broker runs with every one of them
/// (it is made from the file, and it starts).
#[test]
fn the_test_broker_runs_the_kits_mosquitto_conf() {
    let kit_settings = kit_broker_settings();
    for s in REQUIRED_BROKER_SETTINGS {
        assert!(
            kit_settings.contains(s),
            "tools/ops/mosquitto.conf lacks `{s}`: {kit_settings:?}"
        );
    }
    assert!(
        kit_settings
            .iter()
            .any(|s| s.starts_with("autosave_interval ") || *s == "autosave_on_changes true"),
        "tools/ops/mosquitto.conf does not say how often the queue is saved: {kit_settings:?}"
    );

    // What the README and schemas/serve.md tell a deployment to set is in
    // the kit (and so in the test broker), value for value.
    for (doc, named) in documented_broker_settings() {
        for s in named {
            let directive = s.split_whitespace().next().unwrap_or_default();
            if SITE_DIRECTIVES.contains(&directive) {
                continue;
            }
            assert!(
                kit_settings.contains(&s.as_str()),
                "{doc} names `{s}`, tools/ops/mosquitto.conf has {kit_settings:?}"
            );
        }
    }

    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let conf = read(&broker.dir.join("mosquitto.conf"));
    let lines: Vec<&str> = conf.lines().map(str::trim).collect();
    for s in &kit_settings {
        assert!(
            lines.contains(s),
            "the test broker does not run `{s}`:\n{conf}"
        );
    }
    // The kit's site lines (its TLS listener, password file, paths) are
    // the deployment's, not the test's.
    for line in KIT_MOSQUITTO_CONF.lines().map(str::trim) {
        let directive = line.split_whitespace().next().unwrap_or_default();
        if SITE_DIRECTIVES.contains(&directive) {
            assert!(!lines.contains(&line), "site line `{line}` in:\n{conf}");
        }
    }
    // It serves: a message published to it arrives.
    publish_all(broker.port, &[("ops/probe".into(), b"x".to_vec())]);
}

/// A broker process, killed when dropped.
struct Broker(std::process::Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The whole kit `mosquitto.conf`, site section included, works as written:
/// with only its paths and port moved into a temp dir, Mosquitto starts
/// and gapless connects over its TLS listener with a password.
#[test]
fn the_kits_mosquitto_conf_serves_gapless_over_tls_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    // A CA, a server certificate and a password file, made as for the TLS
    // test (its broker is only needed for them).
    let mut made = Mosquitto::start_tls(tmp.path());
    made.stop();
    let tls = made.tls.as_ref().unwrap();
    let certs = tls.ca.parent().unwrap().display().to_string();
    let site = tmp.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    let s = site.display();
    let port = free_port();
    let conf = KIT_MOSQUITTO_CONF
        .replace("listener 8883", &format!("listener {port} 127.0.0.1"))
        .replace("/etc/mosquitto/certs/", &format!("{certs}/"))
        .replace("/etc/mosquitto/passwd", &format!("{certs}/passwd"))
        .replace("/var/lib/mosquitto/", &format!("{s}/"))
        .replace("/var/log/mosquitto/", &format!("{s}/"))
        .replace("/run/mosquitto/", &format!("{s}/"));
    for l in conf.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            !l.contains(" /etc/") && !l.contains(" /var/") && !l.contains(" /run/"),
            "a site path this test does not move: {l}"
        );
    }
    // `user root`: as in support, so that Mosquitto started as root can
    // write into the temp dir.
    let path = site.join("mosquitto.conf");
    std::fs::write(&path, format!("user root\n{conf}")).unwrap();
    let child = Command::new(tool("mosquitto", "mosquitto"))
        .arg("-c")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut broker = Broker(child);
    wait_for(
        "the kit's broker to listen",
        Duration::from_secs(10),
        || {
            if let Ok(Some(status)) = broker.0.try_wait() {
                panic!(
                    "mosquitto -c (the kit's file) exited: {status}\n{}",
                    std::fs::read_to_string(site.join("mosquitto.log")).unwrap_or_default()
                );
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        },
    );

    // Gapless::start waits until gapless has subscribed.
    let ca = tls.ca.display().to_string();
    let mut g = Gapless::start_env(
        &format!("mqtts://localhost:{port}"),
        &tmp.path().join("data"),
        &["--ca-file", &ca, "--username", &tls.username],
        &[("GAPLESS_MQTT_PASSWORD", &tls.password)],
    );
    assert_eq!(g.terminate(), Some(0), "{}", g.log_text());
}

/// The unit with its ExecStart pointed at the binary under test (verify
/// checks that the command exists).
fn unit_for_test(dir: &Path) -> (PathBuf, String) {
    let unit = read(&kit("gapless.service"));
    assert!(
        unit.contains("ExecStart=/usr/local/bin/gapless serve"),
        "{unit}"
    );
    let path = dir.join("gapless.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/gapless", GAPLESS)).unwrap();
    (path, unit)
}

/// The value of `key=` in the unit (the last one, as systemd reads it).
fn unit_value<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let analyze = tool("systemd-analyze", "systemd");
    let tmp = tempfile::tempdir().unwrap();
    let (path, unit) = unit_for_test(tmp.path());

    // No error, and no warning (an unknown key is only a warning).
    let (ok, out, err) = run(
        Command::new(&analyze).arg("verify").arg(&path),
        "systemd-analyze verify",
    );
    assert!(
        ok && err.trim().is_empty(),
        "systemd-analyze verify:\n{out}{err}"
    );

    // systemd's own exposure score, 0 (locked down) to 10: at most 2.0.
    let (ok, out, err) = run(
        Command::new(&analyze)
            .args(["security", "--offline=yes", "--threshold=20"])
            .arg(&path),
        "systemd-analyze security",
    );
    let overall = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_default();
    assert!(ok, "exposure above 2.0: {overall}\n{out}{err}");
    eprintln!("{overall}");

    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/gapless",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks `{line}`");
    }
    // Compaction holds a date's files open: a day of one-minute seals is
    // 1,440 of them.
    let nofile: u64 = unit_value(&unit, "LimitNOFILE")
        .and_then(|v| v.parse().ok())
        .expect("LimitNOFILE=");
    assert!(nofile >= 4096, "LimitNOFILE={nofile}");

    // The audit key comes as a credential from outside the data directory,
    // and serve is told to read it there.
    let data = unit_value(&unit, "ReadWritePaths").unwrap();
    let (name, source) = unit_value(&unit, "LoadCredential")
        .and_then(|v| v.split_once(':'))
        .expect("LoadCredential=NAME:PATH");
    assert!(
        !source.starts_with(data),
        "the key {source} is inside {data}"
    );
    assert!(
        unit.contains(&format!("--audit-key %d/{name}")),
        "serve is not given the credential {name}"
    );

    // Every flag of its ExecStart is one `gapless serve` has.
    let (ok, help, err) = run(
        Command::new(GAPLESS).args(["serve", "--help"]),
        "gapless serve --help",
    );
    assert!(ok, "{err}");
    let exec = unit
        .split("ExecStart=")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    let flags: Vec<&str> = exec
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .collect();
    assert!(flags.len() >= 4, "{exec}");
    for f in flags {
        assert!(
            help.split_whitespace().any(|w| w == f),
            "ExecStart has {f}, which `gapless serve` does not:\n{help}"
        );
    }
}
