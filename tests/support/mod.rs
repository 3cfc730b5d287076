//! Test support: a real Mosquitto on a free port (killable and restartable
//! with its persistence), the real `gapless` binary in a temp directory, a
//! publisher that gets every message PUBACKed, and Parquet read back with
//! the real reader.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

pub const GAPLESS: &str = env!("CARGO_BIN_EXE_gapless");
/// `serve --audit-key-in-data` as an environment variable.
pub const AUDIT_KEY_IN_DATA: &str = "GAPLESS_AUDIT_KEY_IN_DATA";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send_signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// The operators' example broker configuration, which the test broker is
/// made from.
pub const KIT_MOSQUITTO_CONF: &str = include_str!("../../tools/ops/mosquitto.conf");

/// Directives of [`KIT_MOSQUITTO_CONF`] that belong to a site (listeners,
/// TLS, authentication, paths, logging): each test broker sets its own.
pub const SITE_DIRECTIVES: &[&str] = &[
    "listener",
    "cafile",
    "certfile",
    "keyfile",
    "allow_anonymous",
    "password_file",
    "pid_file",
    "persistence_location",
    "log_dest",
];

/// The kit's broker settings that are not site settings, as written there
/// (one directive a line): what every test broker runs with.
pub fn kit_broker_settings() -> Vec<&'static str> {
    KIT_MOSQUITTO_CONF
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| {
            let directive = l.split_whitespace().next().unwrap_or_default();
            !SITE_DIRECTIVES.contains(&directive)
        })
        .collect()
}

/// A private Mosquitto broker, configured as a deployment must be: with
/// the durability settings of `tools/ops/mosquitto.conf` (persistence on,
/// no cap on queued messages for offline clients), on a loopback listener.
pub struct Mosquitto {
    pub port: u16,
    pub dir: PathBuf,
    /// With `start_tls`: a TLS listener requiring a password, and its CA.
    pub tls: Option<TlsListener>,
    child: Option<Child>,
}

pub struct TlsListener {
    pub port: u16,
    pub ca: PathBuf,
    pub username: String,
    pub password: String,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Mosquitto {
    /// A broker with a plain anonymous listener (`port`) and a TLS listener
    /// that requires a user name and password (`tls`), with a CA and a
    /// server certificate for `localhost` made here.
    pub fn start_tls(dir: &Path) -> Mosquitto {
        let tls_dir = dir.join("tls");
        fs::create_dir_all(&tls_dir).unwrap();
        openssl(
            &tls_dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=gapless test CA",
            ],
        );
        openssl(
            &tls_dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        fs::write(
            tls_dir.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(
            &tls_dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
        let (username, password) = ("gapless".to_string(), "s3cret-pw".to_string());
        let st = Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(tls_dir.join("passwd"))
            .args([&username, &password])
            .status()
            .expect("mosquitto_passwd");
        assert!(st.success());
        let tls_port = free_port();
        let t = tls_dir.display();
        let extra = format!(
            "listener {tls_port} 127.0.0.1\n\
             cafile {t}/ca.pem\ncertfile {t}/server.pem\nkeyfile {t}/server.key\n\
             allow_anonymous false\npassword_file {t}/passwd\n"
        );
        let mut m = Mosquitto::start_with(dir, "per_listener_settings true\n", &extra);
        m.tls = Some(TlsListener {
            port: tls_port,
            ca: tls_dir.join("ca.pem"),
            username,
            password,
        });
        m
    }

    pub fn start(dir: &Path) -> Mosquitto {
        Mosquitto::start_with(dir, "", "")
    }

    /// A broker with `head` before and `tail` after the standard config
    /// (a later setting overrides an earlier one).
    pub fn start_with(dir: &Path, head: &str, tail: &str) -> Mosquitto {
        let port = free_port();
        let dir = dir.join("mosquitto");
        fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        // `user root`: started as root, Mosquitto would switch to the
        // `mosquitto` user, which cannot write its persistence into our
        // private temp dir (so nothing would survive a restart). Ignored
        // when not started as root.
        let kit: String = kit_broker_settings()
            .iter()
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(
            &conf,
            format!(
                "{head}listener {port} 127.0.0.1\n\
                 user root\n\
                 allow_anonymous true\n\
                 persistence_location {}/\n\
                 log_dest file {}/mosquitto.log\n\
                 # tools/ops/mosquitto.conf, but for its site settings:\n\
                 {kit}{tail}",
                dir.display(),
                dir.display()
            ),
        )
        .unwrap();
        let mut m = Mosquitto {
            port,
            dir,
            tls: None,
            child: None,
        };
        m.restart();
        m
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the broker on the same port with the same persistence.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (apt-get install mosquitto)");
        self.child = Some(child);
        let port = self.port;
        wait_for("mosquitto to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    /// SIGKILL: the broker crashes (it keeps what it last autosaved,
    /// every second here).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the broker gracefully (it saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            send_signal(c.id(), "-TERM");
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn mosquitto_bin() -> String {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(p).exists() {
            return p.to_string();
        }
    }
    "mosquitto".to_string()
}

/// The real `gapless serve` process.
pub struct Gapless {
    pub data: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    starts: u32,
}

impl Gapless {
    /// Starts `gapless serve` against `broker` with data in `data`. Seals
    /// every half second so tests see files quickly.
    pub fn start(broker: &str, data: &Path, extra: &[&str]) -> Gapless {
        Gapless::start_env(broker, data, extra, &[])
    }

    /// `start`, with extra environment variables for the process.
    pub fn start_env(broker: &str, data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Gapless {
        let mut args = vec![
            "serve".to_string(),
            "--broker".into(),
            broker.to_string(),
            "--data".into(),
            data.display().to_string(),
            "--log".into(),
            "info".into(),
        ];
        if !extra.contains(&"--seal-max-age") {
            args.extend(["--seal-max-age".to_string(), "0.5".to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut g = Gapless {
            data: data.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args,
            child: None,
            log: data.with_extension("log"),
            starts: 0,
        };
        g.restart();
        // Until gapless has subscribed, the broker has no session to queue
        // for it: wait, as a deployment starts gapless before the gateways.
        wait_for("gapless to subscribe", Duration::from_secs(60), || {
            if !g.is_alive() {
                panic!("gapless exited before subscribing:\n{}", g.log_text());
            }
            let log = g.log_text();
            (log.contains("mqtt: subscribed") || log.contains("session_present=true")).then_some(())
        });
        g
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        self.starts += 1;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(GAPLESS)
            .args(&self.args)
            // Test data directories keep their signing key inside (tests
            // that check the refusal set it to false).
            .env(AUDIT_KEY_IN_DATA, "true")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: the crash test's weapon.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        send_signal(c.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "gapless did not stop within 30 s of SIGTERM\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the process exits by itself; its exit code (None: a
    /// signal). Fails the test past `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let c = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                panic!(
                    "gapless did not exit within {timeout:?}\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The environment of the next `restart` (replacing what was given).
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stats(&self) -> serde_json::Value {
        stats(&self.data)
    }

    /// Waits until `n` messages are delivered and all of them are sealed.
    pub fn wait_sealed(&mut self, n: u64, timeout: Duration) -> serde_json::Value {
        self.wait_stats(&format!("{n} messages sealed"), timeout, |s| {
            s["delivered"].as_u64() >= Some(n)
        })
    }

    /// Waits until `n` distinct readings are stored and sealed. Where
    /// redeliveries happen (crashes, reconnects), this, not the number of
    /// delivered messages, says that every published reading has arrived.
    pub fn wait_readings(&mut self, n: u64, timeout: Duration) -> serde_json::Value {
        self.wait_stats(&format!("{n} readings sealed"), timeout, |s| {
            s["readings"]["stored"].as_u64() >= Some(n)
        })
    }

    fn wait_stats(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = stats(&self.data);
            if done(&s) && s["journal_pending"].as_u64() == Some(0) {
                return s;
            }
            if Instant::now() > deadline {
                let log = self.log_text();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; stats: {s}\nlog tail:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Gapless {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `gapless stats --data DIR` as JSON (zeros when nothing is there yet).
pub fn stats(data: &Path) -> serde_json::Value {
    let out = Command::new(GAPLESS)
        .args(["stats", "--data"])
        .arg(data)
        .output()
        .unwrap();
    if !out.status.success() {
        return serde_json::json!({"delivered": 0, "journal_pending": 1,
            "error": String::from_utf8_lossy(&out.stderr)});
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `gapless ARGS` and returns (exit code, stdout, stderr).
pub fn run_gapless(args: &[&str], timeout: Duration) -> (i32, String, String) {
    run_gapless_env(args, &[], timeout)
}

pub fn run_gapless_env(
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> (i32, String, String) {
    let mut cmd = Command::new(GAPLESS);
    cmd.args(args)
        .env(AUDIT_KEY_IN_DATA, "true")
        .envs(env.iter().copied());
    let (status, out, err) = run_to_end(cmd, timeout, &format!("gapless {args:?}"));
    (status.code().unwrap_or(-1), out, err)
}

/// Runs `cmd` to its end and returns its status, stdout and stderr. Both
/// pipes are drained while waiting (a child whose output fills a pipe
/// would otherwise block forever on its write); past `timeout` it is
/// killed and the test fails naming `what`.
pub fn run_to_end(
    mut cmd: Command,
    timeout: Duration,
    what: &str,
) -> (std::process::ExitStatus, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

/// Publishes every message at QoS 1 and returns once each one has been
/// PUBACKed by the broker. Reconnects and re-publishes what was not acked
/// when the broker goes away (so a message may arrive twice: at least once).
pub fn publish_all(port: u16, msgs: &[(String, Vec<u8>)]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(publish_all_async(port, msgs));
}

pub async fn publish_all_async(port: u16, msgs: &[(String, Vec<u8>)]) {
    let mut acked = vec![false; msgs.len()];
    let mut attempt = 0u32;
    let deadline = Instant::now() + Duration::from_secs(300);
    while acked.iter().any(|a| !a) {
        assert!(Instant::now() < deadline, "publisher gave up after 300 s");
        attempt += 1;
        let mut o = MqttOptions::new(
            format!("test-pub-{}-{attempt}", std::process::id()),
            "127.0.0.1",
            port,
        );
        o.set_clean_session(true)
            .set_inflight(200)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 24, 1 << 24);
        let (client, mut ev) = AsyncClient::new(o, 512);
        let todo: Vec<usize> = (0..msgs.len()).filter(|&i| !acked[i]).collect();
        let sender = {
            let client = client.clone();
            let batch: Vec<(String, Vec<u8>)> = todo.iter().map(|&i| msgs[i].clone()).collect();
            tokio::spawn(async move {
                for (t, p) in batch {
                    if client.publish(t, QoS::AtLeastOnce, false, p).await.is_err() {
                        return;
                    }
                }
            })
        };
        let mut sent_order = todo.iter().copied();
        let mut by_pkid: HashMap<u16, usize> = HashMap::new();
        loop {
            match ev.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Some(i) = sent_order.next() {
                        by_pkid.insert(pkid, i);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(a))) => {
                    if let Some(i) = by_pkid.remove(&a.pkid) {
                        acked[i] = true;
                    }
                    if acked.iter().all(|a| *a) {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            }
        }
        sender.abort();
        let _ = client.try_disconnect();
    }
}

/// Reads every sealed Parquet file of a table (hidden and temporary files
/// excluded, as DuckDB and pyarrow would).
pub fn read_table(data: &Path, table: &str) -> Vec<RecordBatch> {
    let mut files = Vec::new();
    collect_parquet(&data.join(table), &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let file = fs::File::open(&f).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            out.push(b.unwrap());
        }
    }
    out
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            collect_parquet(&p, out);
        } else if name.ends_with(".parquet") && !name.starts_with('.') {
            out.push(p);
        }
    }
}

/// Column `name` of every batch as strings (numbers and timestamps
/// formatted by Arrow's display), row by row.
pub fn column_strings(batches: &[RecordBatch], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let col = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        for i in 0..b.num_rows() {
            out.push(cell(col.as_ref(), i));
        }
    }
    out
}

/// Rows of a table as maps column → string, for readable assertions.
pub fn rows(batches: &[RecordBatch]) -> Vec<HashMap<String, String>> {
    let Some(first) = batches.first() else {
        return Vec::new();
    };
    let names: Vec<String> = first
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let cols: Vec<Vec<String>> = names.iter().map(|n| column_strings(batches, n)).collect();
    let n = cols.first().map_or(0, |c| c.len());
    (0..n)
        .map(|i| {
            names
                .iter()
                .zip(&cols)
                .map(|(k, c)| (k.clone(), c[i].clone()))
                .collect()
        })
        .collect()
}

/// One cell as a string: text as is, numbers in decimal, timestamps as
/// RFC 3339 UTC, decimals at their scale, binary as hex.
pub fn cell(col: &dyn arrow_array::Array, i: usize) -> String {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_schema::DataType;
    if col.is_null(i) {
        return "NULL".to_string();
    }
    match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().value(i).to_string(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::UInt8 => col.as_primitive::<UInt8Type>().value(i).to_string(),
        DataType::UInt32 => col.as_primitive::<UInt32Type>().value(i).to_string(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(i).to_string(),
        DataType::Boolean => col.as_boolean().value(i).to_string(),
        DataType::Binary => hex::encode(col.as_binary::<i32>().value(i)),
        DataType::Timestamp(_, _) => {
            let us = col.as_primitive::<TimestampMicrosecondType>().value(i);
            chrono::DateTime::from_timestamp_micros(us)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        }
        DataType::Decimal128(_, scale) => {
            let v = col.as_primitive::<Decimal128Type>().value(i);
            let s = *scale as u32;
            let div = 10i128.pow(s);
            let sign = if v < 0 { "-" } else { "" };
            format!(
                "{sign}{}.{:0w$}",
                (v / div).abs(),
                (v % div).abs(),
                w = s as usize
            )
        }
        other => panic!("cell: unhandled type {other}"),
    }
}

/// A Python with these modules (`GAPLESS_PYTHON`, else `python3`); a test
/// that needs one fails, naming what to install, when it has none
/// (`tools/test.sh` makes a venv with them).
pub fn python_with(modules: &[&str]) -> String {
    let python = std::env::var("GAPLESS_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = std::process::Command::new(&python)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "{python} lacks {modules:?}: run the tests with tools/test.sh (it makes a venv with them), \
         or `pip install {}` and point GAPLESS_PYTHON at that Python",
        modules.join(" ")
    );
    python
}

/// The readings files of `date` in the commit log, and the sources of its
/// newest compacted file.
pub fn compaction_of(data: &Path, date: &str) -> (Vec<String>, Option<Vec<String>>) {
    let files = gapless::store::commit::read_all(data)
        .unwrap()
        .into_iter()
        .flat_map(|m| m.files)
        .filter(|f| f.table == "readings" && f.path.contains(&format!("date={date}/")))
        .map(|f| f.path)
        .collect();
    let latest = gapless::store::compact::latest(data).unwrap();
    (files, latest.get(date).map(|c| c.sources.clone()))
}

/// Waits until the service has compacted `date`: its newest compacted
/// file holds every readings file of the date (two at least).
pub fn wait_compacted(data: &Path, date: &str, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let (files, compacted) = compaction_of(data, date);
        if files.len() >= 2 && compacted.as_ref() == Some(&files) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not compact {date}: files {files:?}, compacted {compacted:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.1 request to the service on loopback: (status, lower-cased
/// head, body, de-chunked). `headers` are whole lines without the CRLF.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[String],
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    write!(s, "{head}Connection: close\r\n\r\n{body}").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, head, body)
}

/// One GET with an optional bearer token: (status, body).
pub fn http_get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let auth: Vec<String> = token
        .map(|t| format!("Authorization: Bearer {t}"))
        .into_iter()
        .collect();
    let (status, _, body) = http_request(port, "GET", path, &auth, "");
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// RFC 3339 of POSIX seconds.
pub fn ts(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `test-artifacts/` in the target directory (outside the sources;
/// `target/` is gitignored): screenshots and printed pages to look at.
pub fn artifacts_dir() -> PathBuf {
    let target = Path::new(GAPLESS)
        .parent()
        .and_then(Path::parent)
        .expect("the gapless binary is in <target>/<profile>/");
    let dir = target.join("test-artifacts");
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Known data around 2022-07-25, one of each status: water meters hourly
/// (W-1 complete, W-2 missing 08:00..11:00), warm water hourly (WW-1
/// complete, or with `ww_replaced_at_noon` a new register from 0 at 12:00),
/// heat meters every 15 minutes (H-1 silent from 18:30: open; H-2 silent
/// since the day before; H-3's register goes down at 10:00), and a heat cost
/// allocator read daily at 03:17 (HKV-1 complete).
pub fn known_day(ww_replaced_at_noon: bool) -> Vec<(String, Vec<u8>)> {
    let start = 1_658_664_000; // 2022-07-24T12:00:00Z
    let end = 1_658_815_200; // 2022-07-26T06:00:00Z
    let day = 1_658_707_200; // 2022-07-25T00:00:00Z
    let mut out = Vec::new();
    let mut push = |meter: &str, medium: &str, unit: &str, t: i64, value: f64| {
        let p = format!(
            r#"{{"meter_id":"{meter}","medium":"{medium}","unit":"{unit}","value":"{value:.3}","ts":"{}"}}"#,
            ts(t)
        );
        out.push((format!("meters/{meter}"), p.into_bytes()));
    };
    for t in (start..end).step_by(3600) {
        let v = (t - start) as f64 / 3600.0 * 0.125;
        push("W-1", "water", "m3", t, 100.0 + v);
        if !(day + 8 * 3600..day + 12 * 3600).contains(&t) {
            push("W-2", "water", "m3", t, 200.0 + v);
        }
        let ww = if ww_replaced_at_noon && t >= day + 12 * 3600 {
            (t - day - 12 * 3600) as f64 / 3600.0 * 0.125
        } else {
            50.0 + v
        };
        push("WW-1", "warm_water", "m3", t, ww);
    }
    for t in (start..end).step_by(900) {
        let v = (t - start) as f64 / 900.0 * 0.5;
        if t < day + 18 * 3600 + 1800 {
            push("H-1", "heat", "kWh", t, 1000.0 + v);
        }
        if t < day {
            push("H-2", "heat", "kWh", t, 2000.0 + v);
        }
        let drop = if t >= day + 10 * 3600 { 40.0 } else { 0.0 };
        push("H-3", "heat", "kWh", t, 3000.0 + v - drop);
    }
    for d in -5..3 {
        push(
            "HKV-1",
            "hca",
            "units",
            day + d * 86_400 + 3 * 3600 + 17 * 60,
            40.0 + d as f64,
        );
    }
    out
}

/// A copy of a directory tree (a data directory kept aside, say).
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}
