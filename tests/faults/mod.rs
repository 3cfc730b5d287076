//! Failing parts (issue 18): the real binary, a real Mosquitto and real
//! files, with the disk filled up (a real tmpfs), made read-only (a real
//! remount), fdatasync failing and the store panicking in the middle of a
//! seal (the two fault seams of `src/fault.rs`), the broker restarting
//! during a backlog, a webhook that never answers, and more lake scans than
//! the API allows. In each: nothing acked is lost, nothing is stored twice,
//! and the service says the truth about itself (`/readyz`, the log, its
//! exit code).
//!
//! The tmpfs tests need root (mount(8)); without it they fail saying so.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::alerts::{at, config, reading, subscribe_alerts, TestClock};
use crate::ingest::{assert_balanced, reading_keys, stream};
use crate::support::*;

const MIN: Duration = Duration::from_secs(60);
const TOKEN: &str = "fault-token";
const ARMED: (&str, &str) = ("GAPLESS_FAULT_ARMED", "break-this-process");

/// A tmpfs of `mb` MiB mounted at `dir` (created), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mb: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount(8) (util-linux) is needed for the disk-full tests");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root (or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_owned())
    }

    fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` until a write fails with ENOSPC; returns
/// the filler file (delete it to give the space back).
fn fill_up(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for size in [1 << 20, 4096, 512, 1] {
        let chunk = vec![0xAB; size];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    let _ = f.sync_all();
    path
}

/// One HTTP/1.1 GET: (status, lower-cased head, body).
fn http(port: u16, path: &str, token: Option<&str>) -> (u16, String, String) {
    let auth: Vec<String> = token
        .map(|t| format!("Authorization: Bearer {t}"))
        .into_iter()
        .collect();
    http_request(port, "GET", path, &auth, "")
}

/// A counter or gauge of `/metrics` (the line `name value`).
fn metric(port: u16, name: &str) -> u64 {
    let (_, _, body) = http(port, "/metrics", None);
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

/// Every published reading is sealed exactly once.
fn assert_each_once(data: &Path, msgs: usize) {
    let keys = reading_keys(data);
    assert_eq!(keys.len(), msgs, "every reading stored");
    assert!(
        keys.values().all(|&n| n == 1),
        "a reading stored twice: {:?}",
        keys.iter()
            .filter(|(_, n)| **n > 1)
            .take(5)
            .collect::<Vec<_>>()
    );
}

/// Disk full: the journal cannot commit. Nothing of it is acked, /readyz
/// says why, the service stays up; when space returns ingest resumes and
/// every message is stored once.
#[test]
fn disk_full_stops_acks_says_why_and_resumes_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let _fs = Tmpfs::mount(&data, 24);
    let port = free_port();
    let http_addr = format!("127.0.0.1:{port}");
    let mut g = Gapless::start_env(
        &broker.url(),
        &data,
        &["--http", &http_addr],
        &[("GAPLESS_API_TOKEN", TOKEN)],
    );
    let first = stream(200, 10, "F");
    publish_all(broker.port, &first);
    g.wait_readings(200, MIN);
    wait_for("ready", MIN, || {
        (http(port, "/readyz", None).0 == 200).then_some(())
    });

    let filler = fill_up(&data);
    let second = stream(300, 10, "G");
    publish_all(broker.port, &second);
    let (_, _, why) = wait_for("/readyz to say the disk is full", MIN, || {
        let r = http(port, "/readyz", None);
        (r.0 == 503 && r.2.contains("disk full")).then_some(r)
    });
    let v: serde_json::Value = serde_json::from_str(&why).unwrap();
    assert!(
        v["failing"].as_array().unwrap().contains(&"journal".into()),
        "{v}"
    );
    // Nothing is acked while the journal cannot commit.
    let acked = metric(port, "gapless_mqtt_acked_total");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        metric(port, "gapless_mqtt_acked_total"),
        acked,
        "acks went on"
    );
    assert!(g.is_alive(), "a full disk is waited out, not a crash");
    assert_eq!(stats(&data)["readings"]["stored"], 200);

    std::fs::remove_file(&filler).unwrap();
    g.wait_readings(500, 2 * MIN);
    wait_for("ready again", MIN, || {
        (http(port, "/readyz", None).0 == 200).then_some(())
    });
    assert!(
        g.log_text().contains("journal: there is room again"),
        "{}",
        g.log_text()
    );
    assert_eq!(g.terminate(), Some(0));
    let s = stats(&data);
    assert_balanced(&s);
    assert_each_once(&data, 500);
}

/// fdatasync fails (seam): the commit is not acked, the journal is not
/// retried on a disk in an unknown state, the service exits non-zero with
/// the cause; the restart stores everything once, and the broker
/// redelivers the failed commit's messages (so they had not been acked).
#[test]
fn a_failed_fsync_acks_nothing_of_its_commit_and_exits_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let mut g = Gapless::start_env(
        &broker.url(),
        &data,
        &[],
        &[("GAPLESS_FAULT", "journal-fsync:3"), ARMED],
    );
    // In chunks, so that there are several commits.
    let msgs = stream(400, 20, "S");
    for chunk in msgs.chunks(50) {
        publish_all(broker.port, chunk);
        std::thread::sleep(Duration::from_millis(100));
    }
    let code = g.wait_exit(MIN);
    let log = g.log_text();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("FAULT INJECTION ARMED"), "{log}");
    assert!(log.contains("fdatasync"), "{log}");
    assert!(log.contains("journal died"), "{log}");
    // The commit that failed: its receipts, from the log.
    let failed = log
        .lines()
        .find(|l| l.contains("journal: commit failed"))
        .and_then(|l| l.split("receipts=").nth(1))
        .and_then(|r| {
            let r = r.trim_start_matches('"');
            let (a, b) = r.split_once("..=")?;
            let b: String = b.chars().take_while(char::is_ascii_digit).collect();
            Some(b.parse::<u64>().ok()? - a.parse::<u64>().ok()? + 1)
        })
        .unwrap_or_else(|| panic!("no failed commit in the log:\n{log}"));

    g.set_env(&[]);
    g.restart();
    let s = g.wait_readings(400, 2 * MIN);
    assert_balanced(&s);
    assert!(
        s["duplicate"].as_u64().unwrap() >= failed,
        "the {failed} messages of the failed commit came again: {s}"
    );
    assert_eq!(g.terminate(), Some(0));
    assert_each_once(&data, 400);
}

/// The store panics in the middle of a seal (seam: its files written, its
/// commit not): the service stops acking and exits non-zero naming the
/// stage; the restart removes the half-sealed files, replays the journal,
/// and every message is stored once.
#[test]
fn a_store_panic_mid_seal_exits_non_zero_and_the_restart_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let mut g = Gapless::start_env(
        &broker.url(),
        &data,
        &[],
        &[("GAPLESS_FAULT", "seal-panic:2"), ARMED],
    );
    let first = stream(150, 10, "P");
    publish_all(broker.port, &first);
    g.wait_readings(150, MIN);
    let second = stream(150, 10, "Q");
    publish_all(broker.port, &second);
    let t = Instant::now();
    let code = g.wait_exit(MIN);
    let log = g.log_text();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("health: store died: panicked: fault injection: seal-panic"),
        "{log}"
    );
    assert!(log.contains("no more acks"), "{log}");
    assert!(
        log.contains("gapless: error: the store stage died"),
        "the cause is the last word: {log}"
    );
    eprintln!("exited {:?} after the second batch", t.elapsed());

    g.set_env(&[]);
    g.restart();
    let s = g.wait_readings(300, 2 * MIN);
    assert_balanced(&s);
    assert!(
        g.log_text()
            .contains("removing a file of an unfinished commit"),
        "the half-sealed files were found"
    );
    assert_eq!(g.terminate(), Some(0));
    assert_each_once(&data, 300);
}

/// A data directory that became read-only: `serve` refuses at once with
/// the reason, exit 1.
#[test]
fn a_read_only_data_directory_is_a_clear_error_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let fs = Tmpfs::mount(&data, 8);
    let mut g = Gapless::start(&broker.url(), &data, &[]);
    publish_all(broker.port, &stream(20, 2, "R"));
    g.wait_readings(20, MIN);
    assert_eq!(g.terminate(), Some(0));
    fs.remount("ro");
    let t = Instant::now();
    let (code, _, err) = run_gapless(
        &[
            "serve",
            "--broker",
            &broker.url(),
            "--data",
            data.to_str().unwrap(),
        ],
        MIN,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("data directory"), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10), "refused at once");
    fs.remount("rw");
}

/// The broker restarts while gapless works through a backlog the broker
/// queued for it: every message stored once. The broker sends at most 20
/// messages in flight (Mosquitto's default), so the backlog takes a second
/// or two and the restart, as soon as gapless is connected, falls in the
/// middle of it. (A restart mid-stream is
/// `ingest::broker_restart_mid_stream_loses_nothing`.)
#[test]
fn broker_restart_during_a_backlog_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start_with(tmp.path(), "", "max_inflight_messages 20\n");
    let data = tmp.path().join("data");
    let port = free_port();
    let http_addr = format!("127.0.0.1:{port}");
    let mut g = Gapless::start_env(
        &broker.url(),
        &data,
        &["--http", &http_addr],
        &[("GAPLESS_API_TOKEN", TOKEN)],
    );
    assert_eq!(g.terminate(), Some(0));
    // Queued by the broker for gapless's persistent session.
    let msgs = stream(40_000, 100, "B");
    publish_all(broker.port, &msgs);
    let connected = |g: &Gapless| g.log_text().matches("mqtt: connected").count();
    g.restart();
    let deadline = Instant::now() + MIN;
    while connected(&g) < 2 {
        assert!(Instant::now() < deadline, "gapless did not reconnect");
        std::thread::sleep(Duration::from_millis(2));
    }
    broker.stop();
    let at_stop = wait_for("the API", MIN, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        Some(metric(port, "gapless_mqtt_delivered_total"))
    });
    assert!(
        at_stop > 0 && at_stop < msgs.len() as u64,
        "the broker stopped during the backlog ({at_stop} of {} delivered)",
        msgs.len()
    );
    std::thread::sleep(Duration::from_secs(1));
    broker.restart();
    wait_for("gapless to reconnect", MIN, || {
        (connected(&g) >= 3).then_some(())
    });
    let s = g.wait_readings(msgs.len() as u64, 3 * MIN);
    assert_balanced(&s);
    assert_eq!(g.terminate(), Some(0));
    assert_each_once(&data, msgs.len());
}

/// A webhook receiver that takes the connection and never answers (it
/// holds each one for 60 s); counts the connections.
fn silent_webhook() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = n.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(60));
                drop(stream);
            });
        }
    });
    (url, n)
}

/// A webhook that sleeps 60 s delays neither the MQTT alert sink nor any
/// ack: the alert is on MQTT at once, and readings published meanwhile
/// are acked and sealed at their usual pace.
#[test]
fn a_slow_webhook_delays_no_other_sink_and_no_ack() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let mqtt = subscribe_alerts(broker.port);
    let (hook_url, hooked) = silent_webhook();
    let clock = TestClock::new(tmp.path());
    let cfg = config(tmp.path());
    let clock_file = clock.0.display().to_string();
    let port = free_port();
    let http_addr = format!("127.0.0.1:{port}");
    let mut g = Gapless::start_env(
        &broker.url(),
        &tmp.path().join("data"),
        &[
            "--config",
            &cfg,
            "--clock-file",
            &clock_file,
            "--alert-webhook",
            &hook_url,
            "--http",
            &http_addr,
        ],
        &[("GAPLESS_API_TOKEN", TOKEN)],
    );
    clock.set(-60);
    let msgs: Vec<(String, Vec<u8>)> = (0..5)
        .map(|k| {
            (
                "meters/gw-a/HZ-1".to_string(),
                reading("HZ-1", -60 + 15 * k, 100 + k as u64),
            )
        })
        .collect();
    publish_all(broker.port, &msgs);
    g.wait_readings(5, MIN);
    clock.set(45);
    let t = Instant::now();
    let got = mqtt.wait_len(1, "meter_silent on MQTT while the webhook hangs");
    assert_eq!(got[0].1["kind"], "meter_silent");
    assert_eq!(got[0].1["deadline"], at(45));
    wait_for("the webhook to be tried", Duration::from_secs(10), || {
        (hooked.load(std::sync::atomic::Ordering::SeqCst) >= 1).then_some(())
    });
    // The webhook is hanging now; ingest goes on at its pace.
    let more: Vec<(String, Vec<u8>)> = (0..200)
        .map(|k| {
            (
                format!("meters/gw-b/HZ-{k}"),
                reading(&format!("HZ-{k}"), 45, 7),
            )
        })
        .collect();
    let acked_before = metric(port, "gapless_mqtt_acked_total");
    publish_all(broker.port, &more);
    g.wait_readings(205, Duration::from_secs(20));
    assert!(
        metric(port, "gapless_mqtt_acked_total") >= acked_before + 200,
        "acks went on"
    );
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "all within the webhook's first hang ({:?})",
        t.elapsed()
    );
    let (st, _, body) = http(port, "/readyz", None);
    assert_eq!(st, 200, "a slow webhook is not an unready service: {body}");
    assert_eq!(g.terminate(), Some(0));
}

/// More concurrent lake scans than `--max-scans 1` allows: the extra ones
/// get 429 with Retry-After at once, the others their answer, and a retry
/// after the wait is served.
#[test]
fn scans_beyond_max_scans_get_429_with_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    let port = free_port();
    let http_addr = format!("127.0.0.1:{port}");
    let mut g = Gapless::start_env(
        &broker.url(),
        &data,
        &["--http", &http_addr, "--max-scans", "1"],
        &[("GAPLESS_API_TOKEN", TOKEN)],
    );
    let msgs = stream(20_000, 200, "C");
    publish_all(broker.port, &msgs);
    g.wait_readings(20_000, 3 * MIN);
    let start = std::sync::Arc::new(std::sync::Barrier::new(12));
    let answers: Vec<(u16, String, String)> = (0..12)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                http(port, "/api/v1/gaps?limit=10", Some(TOKEN))
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let limited: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    let served = answers.iter().filter(|a| a.0 == 200).count();
    assert!(!limited.is_empty(), "12 scans at once, none limited");
    assert!(served >= 1, "{answers:?}");
    assert_eq!(limited.len() + served, 12, "only 200 or 429: {answers:?}");
    for (_, head, body) in &limited {
        assert!(head.contains("retry-after: 1"), "{head}");
        assert!(body.contains("--max-scans"), "{body}");
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(http(port, "/api/v1/gaps?limit=10", Some(TOKEN)).0, 200);
    assert!(
        metric(port, "gapless_backpressure_total{bound=\"api_scans\"}") >= limited.len() as u64
    );
    assert_eq!(g.terminate(), Some(0));
}
