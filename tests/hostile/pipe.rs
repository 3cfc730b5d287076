//! Issue 18 item 7: `gapless stats | head` panicked ("failed printing to
//! stdout: Broken pipe"), and so did every command that prints a lot. Each
//! command here writes into a pipe whose reader is already gone: it must
//! leave without a panic message, with exit status 141 (128 + SIGPIPE, as a
//! shell reports for coreutils), and still exit 0 when the pipe is read.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// Runs `gapless ARGS` with stdout a pipe whose read end was closed before
/// the process started (so its first write fails with EPIPE, whatever the
/// timing). Returns (exit code, stderr).
fn run_into_closed_pipe(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut cmd = Command::new(GAPLESS);
    cmd.args(args).stdout(writer).stderr(Stdio::piped());
    let child = cmd.spawn().expect("start gapless");
    drop(cmd); // the parent's copy of the write end
    let out = wait_output(child, Duration::from_secs(120), args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_output(
    mut child: std::process::Child,
    timeout: Duration,
    what: &[&str],
) -> std::process::Output {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("gapless {what:?} did not finish within {timeout:?} (stdout closed early)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn output_into_a_closed_pipe_exits_141_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let d = data.to_str().unwrap();
    // A real data directory, written by the real binary.
    let (code, _, err) = run_gapless(
        &["demo", "--meters", "20", "--data", d],
        Duration::from_secs(300),
    );
    assert_eq!(code, 0, "demo failed: {err}");
    let commands: Vec<Vec<&str>> = vec![
        vec!["stats", "--data", d],
        vec![
            "gaps",
            "--data",
            d,
            "--open",
            "--to",
            "2022-07-25T00:00:00Z",
        ],
        vec!["alerts", "--data", d],
        vec!["alerts", "--data", d, "--json"],
        vec![
            "report",
            "--data",
            d,
            "--from",
            "2022-07-23",
            "--to",
            "2022-07-24",
            "--format",
            "json",
        ],
        vec!["audit", "verify", "--data", d],
        vec!["audit", "pubkey", "--data", d],
    ];
    for args in &commands {
        // Read to the end, the command works and says so.
        let (code, out, err) = run_gapless(args, Duration::from_secs(120));
        assert_eq!(code, 0, "gapless {args:?}: {err}");
        assert!(
            !out.is_empty(),
            "gapless {args:?} printed nothing: the test would prove nothing"
        );
        // Into a closed pipe: quiet, 141.
        let (code, err) = run_into_closed_pipe(args);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "gapless {args:?} into a closed pipe: {err}"
        );
        assert_eq!(
            code,
            Some(141),
            "gapless {args:?} into a closed pipe: {err}"
        );
    }
    // clap prints `--help` itself and ignores the failed write: quiet, 0.
    let (code, err) = run_into_closed_pipe(&["--help"]);
    assert!(
        !err.contains("panicked"),
        "gapless --help into a closed pipe: {err}"
    );
    assert_eq!(code, Some(0), "gapless --help into a closed pipe: {err}");
}
