//! The systemd unit's `SystemCallFilter=` (`@system-service`, less
//! `@privileged`) fits what `gapless serve` does: every system call of a
//! real run (TLS to the broker, ingest, seals, a compaction, the HTTP API,
//! SIGTERM), traced by strace, is one the unit allows, and every socket of
//! a family it allows. Anything else would fail in production.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::tool;
use crate::support::http_get;
use crate::support::*;

/// The system calls of `systemd-analyze syscall-filter GROUP`, groups
/// expanded.
fn syscalls_of(analyze: &Path, group: &str, seen: &mut BTreeSet<String>) -> BTreeSet<String> {
    let out = Command::new(analyze)
        .args(["syscall-filter", group])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze syscall-filter {group}"
    );
    let mut calls = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let item = line.trim();
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        if item.starts_with('@') {
            if seen.insert(item.to_owned()) {
                calls.extend(syscalls_of(analyze, item, seen));
            }
        } else {
            calls.insert(item.to_owned());
        }
    }
    calls
}

/// One reading per hour of 2022-07-25 for one meter, hours `hours`.
fn readings(hours: std::ops::Range<u32>) -> Vec<(String, Vec<u8>)> {
    hours
        .map(|h| {
            let p = format!(
                r#"{{"meter_id":"SYS-1","medium":"water","unit":"m3","value":"{h}.5","ts":"2022-07-25T{h:02}:00:00Z"}}"#
            );
            ("meters/sys".to_string(), p.into_bytes())
        })
        .collect()
}

/// The first pid in strace's output: the traced gapless.
fn traced_pid(trace: &Path) -> Option<u32> {
    std::fs::read_to_string(trace)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// strace and the gapless it traces, both killed if the test fails (a
/// tracee outlives a killed strace).
struct Traced {
    strace: std::process::Child,
    trace: std::path::PathBuf,
}

impl Drop for Traced {
    fn drop(&mut self) {
        if let Some(pid) = traced_pid(&self.trace) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.strace.kill();
        let _ = self.strace.wait();
    }
}

#[test]
fn serve_makes_only_the_system_calls_the_unit_allows() {
    let strace = tool("strace", "strace");
    let analyze = tool("systemd-analyze", "systemd");
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start_tls(tmp.path());
    let tls = broker.tls.as_ref().unwrap();
    let data = tmp.path().join("data");
    let (trace, log) = (tmp.path().join("trace"), tmp.path().join("serve.log"));
    let port = free_port();
    // The signing key outside the data directory, as the unit has it.
    let key = tmp.path().join("audit.key");
    std::fs::write(&key, format!("{}\n", "5a".repeat(32))).unwrap();
    let strace_child = Command::new(&strace)
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(GAPLESS)
        .args([
            "serve",
            "--broker",
            &format!("mqtts://localhost:{}", tls.port),
        ])
        .arg("--ca-file")
        .arg(&tls.ca)
        .args(["--username", &tls.username, "--data"])
        .arg(&data)
        .arg("--audit-key")
        .arg(&key)
        .args(["--seal-max-age", "0.3", "--compact-every", "0.3"])
        .args([
            "--compact-grace",
            "0",
            "--http",
            &format!("127.0.0.1:{port}"),
        ])
        .env("GAPLESS_MQTT_PASSWORD", &tls.password)
        .env("GAPLESS_API_TOKEN", "syscalls")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut traced = Traced {
        strace: strace_child,
        trace: trace.clone(),
    };
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("gapless to subscribe", Duration::from_secs(60), || {
        // strace's own errors (no ptrace in this container, say) are in
        // the log too.
        if let Some(status) = traced.strace.try_wait().unwrap() {
            panic!("strace gapless serve exited ({status}):\n{}", log_text());
        }
        log_text().contains("mqtt: subscribed").then_some(())
    });
    // Two seals of one date, then its compaction.
    publish_all(broker.port, &readings(0..6));
    wait_for("the first seal", Duration::from_secs(60), || {
        (stats(&data)["stored"].as_u64() == Some(6)).then_some(())
    });
    publish_all(broker.port, &readings(8..12));
    wait_compacted(&data, "2022-07-25", Duration::from_secs(60));
    let (status, _) = http_get(port, "/metrics", None);
    assert_eq!(status, 200);
    let (status, body) = http_get(
        port,
        "/api/v1/report?from=2022-07-25&to=2022-07-26",
        Some("syscalls"),
    );
    assert_eq!(status, 200, "{body}");

    // SIGTERM to gapless, as systemd stops it.
    let pid = traced_pid(&trace).expect("the trace names gapless's pid");
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = wait_for("gapless to stop", Duration::from_secs(60), || {
        traced.strace.try_wait().unwrap()
    });
    assert!(status.success(), "{}", log_text());
    assert!(log_text().contains("stopped cleanly"), "{}", log_text());

    // Every call strace saw, by name ("1234 openat(...", and the resumed
    // halves of interrupted calls, "1234 <... futex resumed>").
    let text = std::fs::read_to_string(&trace).unwrap();
    let used: BTreeSet<String> = text
        .lines()
        .filter_map(|l| {
            let call = l.split_once(' ')?.1.trim_start();
            let call = call.strip_prefix("<... ").unwrap_or(call);
            let name: String = call
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty() && name != "exited" && name != "killed").then_some(name)
        })
        .collect();
    assert!(used.len() > 20, "too few calls traced: {used:?}");
    // The unit's filter: allow lists, and `~` deny lists after them.
    let unit = std::fs::read_to_string(super::kit("gapless.service")).unwrap();
    let (mut allowed, mut denied) = (BTreeSet::new(), BTreeSet::new());
    for value in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        let (set, list) = match value.strip_prefix('~') {
            Some(list) => (&mut denied, list),
            None => (&mut allowed, value),
        };
        for item in list.split_whitespace() {
            if item.starts_with('@') {
                set.extend(syscalls_of(&analyze, item, &mut BTreeSet::new()));
            } else {
                set.insert(item.to_owned());
            }
        }
    }
    assert!(
        allowed.len() > 100,
        "no allow list in the unit: {allowed:?}"
    );
    let outside: Vec<_> = used
        .iter()
        .filter(|c| !allowed.contains(*c) || denied.contains(*c))
        .collect();
    assert!(
        outside.is_empty(),
        "gapless serve made calls the unit's SystemCallFilter refuses: {outside:?} (of {used:?})"
    );
    eprintln!("{} distinct system calls, all allowed", used.len());

    // And every socket is of a family RestrictAddressFamilies= leaves.
    let families = unit
        .lines()
        .find_map(|l| l.strip_prefix("RestrictAddressFamilies="))
        .expect("RestrictAddressFamilies=");
    let mut opened = BTreeSet::new();
    for l in text.lines() {
        for call in ["socket(", "socketpair("] {
            if let Some((_, args)) = l.split_once(&format!(" {call}")) {
                opened.insert(args.split(',').next().unwrap_or_default().to_owned());
            }
        }
    }
    assert!(opened.contains("AF_INET"), "{opened:?}");
    for family in &opened {
        assert!(
            families.split_whitespace().any(|f| f == family),
            "gapless serve opened an {family} socket, which RestrictAddressFamilies={families} refuses"
        );
    }
}
