//! Progress of long commands: `compact`, `audit verify`, `report` and
//! `bench report`'s generation draw a bar on a terminal (a real pty, from
//! `script`) and nothing at all when stderr is a pipe.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::tool;
use crate::support::*;

/// What a drawn bar leaves in the byte stream: indicatif returns to the
/// line's start and erases it before each redraw.
const REDRAW: &str = "\r\x1b[2K";

/// A data set made by the real pipeline (`gapless demo`, 200 meters, four
/// days with an outage): dates with two readings files each, to compact.
fn demo_data(dir: &Path) -> PathBuf {
    let data = dir.join("demo");
    let (code, out, err) = run_gapless(
        &[
            "demo",
            "--meters",
            "200",
            "--data",
            &data.display().to_string(),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(code, 0, "demo:\n{out}{err}");
    data
}

/// Runs `gapless ARGS` with stderr on a pseudo-terminal (`script`), stdout
/// to `stdout`; returns (exit code, what the terminal got, stdout).
fn on_a_terminal(args: &[String], stdout: &Path) -> (i32, String, String) {
    let script = tool("script", "bsdutils");
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let line = std::iter::once(GAPLESS.to_string())
        .chain(args.iter().cloned())
        .map(|a| quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new(script);
    cmd.args(["-q", "-e", "-c"])
        .arg(format!("{line} > {}", quote(&stdout.display().to_string())))
        .arg("/dev/null")
        .env("TERM", "xterm-256color");
    let (status, tty, err) = run_to_end(cmd, Duration::from_secs(120), "script");
    assert!(err.is_empty(), "script: {err}");
    let out = std::fs::read_to_string(stdout).unwrap_or_default();
    (status.code().unwrap_or(-1), tty, out)
}

/// Progress noise: a carriage return, or any escape sequence.
fn noise(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find(|l| l.contains('\r') || l.contains('\x1b') || l.contains("[00:0"))
        .map(|l| format!("{l:?}"))
}

/// Each command's arguments, given its data directory; the bar's title and
/// unit.
fn commands(data: &Path) -> Vec<(Vec<String>, &'static str, &'static str)> {
    let d = data.display().to_string();
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (
            v(&["compact", "--data", &d, "--grace", "0"]),
            "compact",
            "dates",
        ),
        (
            v(&["audit", "verify", "--data", &d]),
            "audit verify",
            "files",
        ),
        (
            v(&[
                "report",
                "--data",
                &d,
                "--from",
                "2022-07-20",
                "--to",
                "2022-07-26",
            ]),
            "report",
            "readings",
        ),
        // Three passes: the report, the estimates, the certificate.
        (
            v(&[
                "report",
                "--data",
                &d,
                "--from",
                "2022-07-20",
                "--to",
                "2022-07-26",
                "--estimate",
                "--format",
                "html",
            ]),
            "report",
            "readings",
        ),
    ]
}

#[test]
fn long_commands_show_progress_on_a_terminal_and_none_when_piped() {
    let tmp = tempfile::tempdir().unwrap();
    let made = demo_data(tmp.path());
    let (piped, tty) = (tmp.path().join("piped"), tmp.path().join("tty"));
    copy_dir(&made, &piped);
    copy_dir(&made, &tty);

    for (args, _, _) in commands(&piped) {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = run_gapless(&a, Duration::from_secs(120));
        assert_eq!(code, 0, "{args:?}:\n{out}{err}");
        assert!(!out.is_empty(), "{args:?} printed nothing");
        if let Some(l) = noise(&err) {
            panic!("{args:?} piped wrote progress to stderr: {l}\n{err}");
        }
    }

    for (args, title, unit) in commands(&tty) {
        let (code, terminal, out) = on_a_terminal(&args, &tmp.path().join("stdout"));
        assert_eq!(code, 0, "{args:?} on a terminal:\n{terminal}");
        assert!(!out.is_empty(), "{args:?} printed nothing on stdout");
        assert!(
            terminal.contains(REDRAW) && terminal.contains(title) && terminal.contains(unit),
            "{args:?} drew no progress bar on a terminal: {terminal:?}"
        );
        // The bar is stderr's alone: stdout (the results) has none of it.
        assert!(noise(&out).is_none(), "{args:?} stdout: {out:?}");
        // A log line (compact logs each date) is written on a cleared
        // line, not after the bar.
        for line in terminal.lines().filter(|l| l.contains("gapless::")) {
            let after_clear = line.rsplit(REDRAW).next().unwrap_or_default();
            assert!(
                after_clear.contains("gapless::") && !after_clear.contains(&format!("{title} ")),
                "a log line shares the bar's line: {line:?}"
            );
        }
    }
}

/// `bench report` generates its data set once, with a bar on a terminal;
/// piped, only its two lines (what it makes, what it made).
#[test]
fn bench_reports_generation_shows_progress_on_a_terminal_only() {
    let python = python_with(&["duckdb"]);
    let tmp = tempfile::tempdir().unwrap();
    let args = |data: &Path| -> Vec<String> {
        [
            "bench",
            "report",
            "--readings",
            "20000",
            "--meters",
            "100",
            "--repeat",
            "1",
            "--python",
            &python,
            "--data",
            &data.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    let piped = args(&tmp.path().join("piped"));
    let a: Vec<&str> = piped.iter().map(String::as_str).collect();
    let (code, out, err) = run_gapless(&a, Duration::from_secs(300));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("gap counts identical"), "{out}");
    assert!(err.contains("generating"), "{err}");
    if let Some(l) = noise(&err) {
        panic!("bench report piped wrote progress to stderr: {l}\n{err}");
    }

    let (code, terminal, out) =
        on_a_terminal(&args(&tmp.path().join("tty")), &tmp.path().join("stdout"));
    assert_eq!(code, 0, "{terminal}");
    assert!(out.contains("gap counts identical"), "{out}");
    assert!(
        terminal.contains(REDRAW) && terminal.contains("readings"),
        "no progress bar on a terminal: {terminal:?}"
    );
}
