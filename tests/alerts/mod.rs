//! Alerts over the real broker with a controllable clock (`serve
//! --clock-file`): what device teams get on MQTT and on a webhook (a real
//! HTTP server in the test), across a SIGKILL and a restart.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

use crate::support::*;

const T0: &str = "2026-03-02T06:00:00Z";

pub(crate) fn at(minutes: i64) -> String {
    let t0 = chrono::DateTime::parse_from_rfc3339(T0).unwrap();
    (t0 + chrono::Duration::minutes(minutes))
        .to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The service's clock: the file it reads "now" from.
pub(crate) struct TestClock(pub(crate) std::path::PathBuf);

impl TestClock {
    pub(crate) fn new(dir: &Path) -> TestClock {
        let c = TestClock(dir.join("now.txt"));
        c.set(0);
        c
    }

    pub(crate) fn set(&self, minutes: i64) {
        let tmp = self.0.with_extension("tmp");
        std::fs::write(&tmp, at(minutes)).unwrap();
        std::fs::rename(&tmp, &self.0).unwrap();
        // The service reads it every 10 ms.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Alerts as a subscriber to `gapless/alerts/#` receives them.
#[derive(Clone, Default)]
pub(crate) struct Received(Arc<Mutex<Vec<(String, Value)>>>);

impl Received {
    pub(crate) fn all(&self) -> Vec<(String, Value)> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn wait_len(&self, n: usize, what: &str) -> Vec<(String, Value)> {
        wait_for(what, Duration::from_secs(20), || {
            let all = self.all();
            (all.len() >= n).then_some(all)
        })
    }
}

/// Subscribes to the alert topics (QoS 1) and collects what arrives.
pub(crate) fn subscribe_alerts(port: u16) -> Received {
    let got = Received::default();
    let out = got.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut o = MqttOptions::new(format!("alert-watcher-{port}"), "127.0.0.1", port);
            o.set_keep_alive(Duration::from_secs(5));
            let (client, mut ev) = AsyncClient::new(o, 64);
            client
                .subscribe("gapless/alerts/#", QoS::AtLeastOnce)
                .await
                .unwrap();
            let mut ready = Some(ready_tx);
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v: Value = serde_json::from_slice(&p.payload).unwrap();
                        out.0.lock().unwrap().push((p.topic.clone(), v));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("alert watcher subscribed");
    got
}

/// A webhook receiver: answers 200 and keeps each POST body.
fn webhook_server() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/gapless", listener.local_addr().unwrap());
    let got = Received::default();
    let out = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut len = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap();
            out.0
                .lock()
                .unwrap()
                .push((request_line.trim().to_owned(), v));
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, got)
}

pub(crate) fn reading(meter: &str, minutes: i64, value: u64) -> Vec<u8> {
    serde_json::json!({
        "meter_id": meter, "medium": "heat", "register": "energy", "unit": "kWh",
        "value": value.to_string(), "ts": at(minutes),
    })
    .to_string()
    .into_bytes()
}

pub(crate) fn config(dir: &Path) -> String {
    let path = dir.join("gapless.toml");
    std::fs::write(
        &path,
        "[continuity]\nintervals_s = { heat = 900 }\n\n[alerts]\nstartup_grace_s = 0\ngroup_min = 20\n",
    )
    .unwrap();
    path.display().to_string()
}

fn kinds(v: &[(String, Value)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(_, a)| {
            (
                a["kind"].as_str().unwrap().to_owned(),
                a["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Nothing more arrives for a while.
fn settle(r: &Received, n: usize, what: &str) {
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(r.all().len(), n, "{what}: {:#?}", r.all());
}

/// A broker, an alert watcher on it, a webhook receiver, the test clock,
/// and the service using all of them (with `extra` flags and `env`).
struct Rig {
    tmp: tempfile::TempDir,
    broker: Mosquitto,
    mqtt: Received,
    hook: Received,
    clock: TestClock,
    g: Gapless,
}

impl Rig {
    fn start(extra: &[&str], env: &[(&str, &str)]) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let broker = Mosquitto::start(tmp.path());
        let mqtt = subscribe_alerts(broker.port);
        let (hook_url, hook) = webhook_server();
        let clock = TestClock::new(tmp.path());
        let cfg = config(tmp.path());
        let clock_file = clock.0.display().to_string();
        let mut args = vec![
            "--config",
            &cfg,
            "--clock-file",
            &clock_file,
            "--alert-webhook",
            &hook_url,
        ];
        args.extend_from_slice(extra);
        let g = Gapless::start_env(&broker.url(), &tmp.path().join("data"), &args, env);
        Rig {
            tmp,
            broker,
            mqtt,
            hook,
            clock,
            g,
        }
    }
}

#[test]
fn a_silent_meter_is_told_once_and_its_return_once_across_a_crash() {
    let http_port = free_port();
    let http = format!("127.0.0.1:{http_port}");
    let Rig {
        tmp,
        mut broker,
        mqtt,
        hook,
        clock,
        mut g,
    } = Rig::start(&["--http", &http], &[("GAPLESS_API_TOKEN", "tok")]);
    // An hour of readings, every 15 minutes, received as they were due
    // (the clock stands at the first one).
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
    g.wait_readings(5, Duration::from_secs(30));

    // alert_after = 3 × 15 min: not yet at 44 minutes.
    clock.set(44);
    settle(&mqtt, 0, "before the deadline");
    let t = Instant::now();
    clock.set(45);
    let got = mqtt.wait_len(1, "meter_silent on MQTT");
    eprintln!(
        "meter_silent arrived {:?} after the clock passed the deadline",
        t.elapsed()
    );
    let (topic, a) = &got[0];
    assert_eq!(topic, "gapless/alerts/meter_silent/HZ-1");
    assert_eq!(a["kind"], "meter_silent");
    assert_eq!(a["state"], "open");
    assert_eq!(a["meter_id"], "HZ-1");
    assert_eq!(a["group"], "meters/gw-a");
    assert_eq!(a["last_reading_at"], at(0));
    assert_eq!(a["deadline"], at(45));
    let hooked = hook.wait_len(1, "meter_silent on the webhook");
    assert_eq!(hooked[0].0, "POST /hooks/gapless HTTP/1.1");
    assert_eq!(hooked[0].1, *a, "the webhook gets the same JSON");
    // Open on the API; counted in the metrics.
    let (st, body) = http_get(http_port, "/api/v1/alerts?open=true", Some("tok"));
    assert_eq!(st, 200, "{body}");
    let open: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(open["alerts"].as_array().unwrap().len(), 1, "{open}");
    assert_eq!(open["alerts"][0], *a);
    let (_, metrics) = http_get(http_port, "/metrics", None);
    assert!(
        metrics.contains("gapless_open_alerts{kind=\"meter_silent\"} 1"),
        "{metrics}"
    );

    // Still silent much later: no repeat.
    clock.set(100);
    settle(&mqtt, 1, "no repeat while silent");

    // A crash in the middle, then a restart: no second meter_silent.
    g.kill();
    g.restart();
    clock.set(110);
    settle(&mqtt, 1, "no duplicate after the restart");

    // The meter reports again: one meter_resumed carrying the gap.
    publish_all(
        broker.port,
        &[("meters/gw-a/HZ-1".to_string(), reading("HZ-1", 110, 120))],
    );
    let got = mqtt.wait_len(2, "meter_resumed on MQTT");
    let (topic, r) = &got[1];
    assert_eq!(topic, "gapless/alerts/meter_resumed/HZ-1");
    assert_eq!(r["kind"], "meter_resumed");
    assert_eq!(r["closes"], a["alert_seq"]);
    assert_eq!(r["gap"]["from"], at(0));
    assert_eq!(r["gap"]["to"], at(110));
    assert_eq!(r["gap"]["duration_s"], 110 * 60);
    assert_eq!(r["gap"]["missing"], 6, "{r}");
    assert_eq!(r["gap"]["consumption_exact"], true);
    let hooked = hook.wait_len(2, "meter_resumed on the webhook");
    assert_eq!(kinds(&hooked), kinds(&got));
    settle(&mqtt, 2, "nothing else");
    assert_eq!(hook.all().len(), 2);

    // Nothing open any more; the alerts table holds both, in the ledger.
    let (_, body) = http_get(http_port, "/api/v1/alerts?open=true", Some("tok"));
    let open: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(open["alerts"].as_array().unwrap().len(), 0, "{open}");
    let (_, body) = http_get(http_port, "/api/v1/alerts?kind=meter_resumed", Some("tok"));
    let listed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed["alerts"][0], *r);
    let (st, _) = http_get(http_port, "/api/v1/alerts?kind=nope", Some("tok"));
    assert_eq!(st, 400);
    g.terminate();
    let rows = rows(&read_table(&g.data, "alerts"));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["kind"], "meter_silent");
    assert_eq!(rows[1]["kind"], "meter_resumed");
    assert_eq!(rows[1]["consumption_exact"], "true");
    let data = g.data.display().to_string();
    let (code, out, err) = run_gapless(
        &["audit", "verify", "--data", &data],
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    // And without gapless (an alerts-only commit is among them: the
    // meter_silent came when nothing else was pending).
    {
        let python = python_with(&["pyarrow", "cryptography"]);
        let (_, key, _) = run_gapless(
            &["audit", "pubkey", "--data", &data],
            Duration::from_secs(30),
        );
        let key_file = tmp.path().join("pubkey.txt");
        std::fs::write(&key_file, key).unwrap();
        let o = std::process::Command::new(python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tools/verify_audit.py"
            ))
            .arg(&g.data)
            .arg(&key_file)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // The CLI lists the same alerts.
    let (code, out, _) = run_gapless(
        &["alerts", "--data", &data, "--json"],
        Duration::from_secs(30),
    );
    assert_eq!(code, 0);
    let listed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed, vec![a.clone(), r.clone()]);
    let (_, out, _) = run_gapless(
        &["alerts", "--data", &data, "--open"],
        Duration::from_secs(30),
    );
    assert!(out.ends_with("0 alerts\n"), "{out}");
    let (code, _, err) = run_gapless(
        &["alerts", "--data", &data, "--kind", "x"],
        Duration::from_secs(30),
    );
    assert_eq!(code, 2, "{err}");
    let missing = tmp.path().join("nothing-here").display().to_string();
    let (code, _, err) = run_gapless(&["alerts", "--data", &missing], Duration::from_secs(30));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not exist"), "{err}");
    broker.stop();
}

#[test]
fn fifty_silent_meters_of_a_gateway_make_one_alert_and_one_recovery() {
    let Rig {
        tmp: _tmp,
        broker,
        mqtt,
        hook,
        clock,
        mut g,
    } = Rig::start(&[], &[]);
    clock.set(-45);
    let meters: Vec<String> = (0..50).map(|i| format!("WMZ-{i:03}")).collect();
    let mut msgs = Vec::new();
    for k in 0..4 {
        for m in &meters {
            msgs.push((
                format!("meters/gw-b/{m}"),
                reading(m, -45 + 15 * k, 10 + k as u64),
            ));
        }
    }
    publish_all(broker.port, &msgs);
    g.wait_readings(200, Duration::from_secs(30));

    // The gateway dies: one group alert, not fifty.
    clock.set(46);
    let got = mqtt.wait_len(1, "group_silent");
    settle(&mqtt, 1, "one alert for the whole gateway");
    let (topic, a) = &got[0];
    assert_eq!(topic, "gapless/alerts/group_silent/meters/gw-b");
    assert_eq!(a["kind"], "group_silent");
    assert_eq!(a["count"], 50);
    assert_eq!(a["members"].as_array().unwrap().len(), 50);
    assert_eq!(
        kinds(&hook.wait_len(1, "group_silent on the webhook")),
        kinds(&got)
    );

    // A restart in the middle: no duplicate.
    g.terminate();
    g.restart();
    clock.set(60);
    settle(&mqtt, 1, "no duplicate group alert after the restart");

    // The gateway comes back: one group_resumed, no meter alerts.
    let back: Vec<(String, Vec<u8>)> = meters
        .iter()
        .map(|m| (format!("meters/gw-b/{m}"), reading(m, 60, 20)))
        .collect();
    publish_all(broker.port, &back);
    let got = mqtt.wait_len(2, "group_resumed");
    settle(&mqtt, 2, "one recovery for the whole gateway");
    assert_eq!(
        kinds(&got),
        vec![
            ("group_silent".into(), "meters/gw-b".into()),
            ("group_resumed".into(), "meters/gw-b".into())
        ]
    );
    assert_eq!(got[1].1["closes"], got[0].1["alert_seq"]);
    assert_eq!(got[1].1["count"], 50);
    hook.wait_len(2, "group_resumed on the webhook");
    g.terminate();
}

/// Issue 16: the startup grace follows the evidence. On a fresh deployment
/// the broker has no session for us, so nothing can be queued: a meter
/// that stops soon after the first start is announced at its deadline,
/// not after `startup_grace_s` (here 2 h, longer than the deadline).
#[test]
fn no_startup_grace_when_the_broker_had_no_session() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let mqtt = subscribe_alerts(broker.port);
    let clock = TestClock::new(tmp.path());
    let cfg = tmp.path().join("gapless.toml");
    std::fs::write(
        &cfg,
        "[continuity]\nintervals_s = { heat = 900 }\n\n[alerts]\nstartup_grace_s = 7200\n",
    )
    .unwrap();
    let (cfg, clock_file) = (cfg.display().to_string(), clock.0.display().to_string());
    let data = tmp.path().join("data");
    let mut g = Gapless::start(
        &broker.url(),
        &data,
        &["--config", &cfg, "--clock-file", &clock_file],
    );
    // Readings at 0 and 15 minutes, then the meter stops: due at 15 + 45.
    for k in 0..2 {
        clock.set(15 * k);
        publish_all(
            broker.port,
            &[(
                "meters/gw-f/HZ-9".to_string(),
                reading("HZ-9", 15 * k, 10 + k as u64),
            )],
        );
    }
    g.wait_readings(2, Duration::from_secs(30));
    clock.set(59);
    settle(&mqtt, 0, "before the deadline");
    let t = Instant::now();
    clock.set(60);
    let got = mqtt.wait_len(1, "meter_silent within its deadline, not after the grace");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(got[0].1["kind"], "meter_silent");
    assert_eq!(got[0].1["deadline"], at(60));
    assert!(
        g.log_text().contains("session_present=false"),
        "the broker had no session"
    );
    g.terminate();
}

/// Issue 16: with a session kept, the grace lasts until the broker's
/// backlog has drained and been read, not `startup_grace_s` (2 h here). A
/// meter silent past its deadline while the service was down is announced
/// right after; one whose readings waited in the backlog is not.
#[test]
fn the_startup_grace_ends_once_the_backlog_has_drained() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let mqtt = subscribe_alerts(broker.port);
    let clock = TestClock::new(tmp.path());
    let cfg = tmp.path().join("gapless.toml");
    std::fs::write(
        &cfg,
        "[continuity]\nintervals_s = { heat = 900 }\n\n[alerts]\nstartup_grace_s = 7200\n",
    )
    .unwrap();
    let (cfg, clock_file) = (cfg.display().to_string(), clock.0.display().to_string());
    let data = tmp.path().join("data");
    let flags = [
        "--config",
        cfg.as_str(),
        "--clock-file",
        clock_file.as_str(),
    ];
    let mut g = Gapless::start(&broker.url(), &data, &flags);
    let send = |meter: &str, minute: i64| {
        publish_all(
            broker.port,
            &[(
                format!("meters/gw-d/{meter}"),
                reading(meter, minute, 10 + minute as u64),
            )],
        );
    };
    for m in [0, 15] {
        clock.set(m);
        send("HD-1", m);
        send("HD-2", m);
    }
    g.wait_readings(4, Duration::from_secs(30));
    assert_eq!(g.terminate(), Some(0));
    // While it is down: HD-2 goes on (queued for the session), HD-1 is
    // silent past its deadline (15 + 45 = 60).
    for m in [30, 45, 60, 75, 90] {
        send("HD-2", m);
    }
    clock.set(100);
    let t = Instant::now();
    g.restart();
    g.wait_readings(9, Duration::from_secs(30));
    let got = mqtt.wait_len(
        1,
        "meter_silent once the backlog is read, not after the grace",
    );
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(got[0].1["kind"], "meter_silent", "{got:?}");
    assert_eq!(got[0].1["meter_id"], "HD-1", "{got:?}");
    assert_eq!(got[0].1["deadline"], at(60));
    settle(&mqtt, 1, "HD-2's readings were in the backlog: not silent");
    let log = g.log_text();
    assert!(
        log.contains("session_present=true"),
        "the broker kept the session"
    );
    g.terminate();
}
