//! The README's commands, so none goes stale: every line of its `sh`
//! blocks is run here, in order, in a fresh directory (the demo on a small
//! fleet, `serve` against a private Mosquitto, the reports, DuckDB's
//! queries, both verifiers), or, for the few that take minutes or are this
//! very test command, checked without running. A line this file does not
//! know fails the test, so a new command in the README needs a way to be
//! checked here. The benchmark commands of `benches/BENCHMARKS.md` are
//! parsed by the real CLI too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;

use crate::support::*;

const README: &str = include_str!("../../README.md");
const BENCHMARKS: &str = include_str!("../../benches/BENCHMARKS.md");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The logical lines of a markdown's fenced blocks of `lang`: continuation
/// backslashes joined, comments and blank lines dropped.
fn commands(markdown: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut pending = String::new();
    for line in markdown.lines() {
        let t = line.trim();
        if let Some(tag) = t.strip_prefix("```") {
            inside = !inside && tag == lang;
            continue;
        }
        if !inside {
            continue;
        }
        let code = strip_comment(line);
        if let Some(head) = code.trim_end().strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(code);
        let cmd = pending.trim().to_string();
        pending.clear();
        if !cmd.is_empty() {
            out.push(cmd);
        }
    }
    out
}

/// `line` without a trailing `# comment` (a `#` after whitespace, outside
/// quotes).
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return &line[..i],
            _ => {}
        }
        prev = c;
    }
    line
}

/// Splits a command line as a POSIX shell would for the quoting the README
/// uses: words, '…' and "…" (no expansions, which the README avoids).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                any = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                any = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$')) => {
                            cur.push(chars.next().unwrap())
                        }
                        c => cur.push(c),
                    }
                }
            }
            c if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The two expansions the README uses: `~/` (the test's directory is
/// `$HOME` for every command) and `$(cat FILE)` (a file an earlier command
/// wrote).
fn expand(word: &str, dir: &Path) -> String {
    let mut w = match word.strip_prefix("~/") {
        Some(rest) => format!("{}/{rest}", dir.display()),
        None => word.to_string(),
    };
    while let Some(at) = w.find("$(cat ") {
        let end = at + w[at..].find(')').expect("unclosed $(cat");
        let file = dir.join(&w[at + 6..end]);
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("README's $(cat {}): {e}", file.display()));
        w.replace_range(at..=end, text.trim_end());
    }
    w
}

/// `gapless`'s arguments in a README command (`cargo run --release -- …`
/// or `gapless …`), else None.
fn gapless_args(w: &[String]) -> Option<Vec<String>> {
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["cargo", "run", "--release", "--", rest @ ..] | ["gapless", rest @ ..] => {
            Some(rest.iter().map(|s| s.to_string()).collect())
        }
        _ => None,
    }
}

/// Every `gapless` command line the real CLI must accept.
fn assert_parses(args: &[String], line: &str) {
    let argv = std::iter::once("gapless".to_string()).chain(args.iter().cloned());
    if let Err(e) = gapless::cli::Cli::try_parse_from(argv) {
        panic!("README command no longer parses: {line}\n{e}");
    }
}

/// Runs `cmd` in `dir` to its end; a failure names the README line.
fn run_ok(mut cmd: Command, dir: &Path, line: &str) -> String {
    cmd.current_dir(dir).env("HOME", dir);
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(300), line);
    assert!(
        status.success(),
        "README command failed ({status}): {line}\n{out}\n{err}"
    );
    out
}

/// A README `serve` running in the background against the test's broker.
struct Serving {
    child: Child,
    log: PathBuf,
}

impl Serving {
    fn start(args: &[String], dir: &Path, broker: &str) -> Serving {
        let log = dir.join("serve.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(GAPLESS)
            .args(args)
            .args(["--broker", broker, "--seal-max-age", "0.5"])
            .current_dir(dir)
            .env("HOME", dir)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut s = Serving { child, log };
        wait_for(
            "the README's serve to subscribe",
            Duration::from_secs(60),
            || {
                assert!(
                    s.child.try_wait().unwrap().is_none(),
                    "the README's serve exited:\n{}",
                    s.log_text()
                );
                s.log_text().contains("mqtt: subscribed").then_some(())
            },
        );
        s
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn readme_commands_parse_and_run() {
    let cmds = commands(README, "sh");
    assert!(
        cmds.len() >= 12,
        "found only {} README commands: {cmds:?}",
        cmds.len()
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let broker = Mosquitto::start(dir);
    let mut serving: Option<Serving> = None;
    let python = python_with(&["pyarrow", "duckdb", "cryptography"]);
    let mut ran = 0;
    for line in &cmds {
        let w: Vec<String> = words(line).iter().map(|w| expand(w, dir)).collect();
        // `CMD > FILE`: stdout to a file in the directory.
        let (w, redirect) = match w.iter().position(|x| x == ">") {
            Some(i) => (w[..i].to_vec(), Some(w[i + 1].clone())),
            None => (w, None),
        };
        let out = if let Some(args) = gapless_args(&w) {
            assert_parses(&args, line);
            match args[0].as_str() {
                // Serves until stopped: tests/certificate runs it.
                "demo" if args.iter().any(|a| a == "--serve") => None,
                // On a small fleet, so the test takes seconds.
                "demo" => {
                    let mut cmd = Command::new(GAPLESS);
                    cmd.args(&args).args(["--meters", "600", "--log", "warn"]);
                    Some(run_ok(cmd, dir, line))
                }
                "serve" => {
                    assert!(serving.is_none(), "two serves in the README");
                    serving = Some(Serving::start(&args, dir, &broker.url()));
                    None
                }
                // Minutes of work: the flags are checked above.
                "bench" => None,
                // Serves until stopped: tests/witness runs it.
                "witness" => None,
                "stats" if serving.is_some() => {
                    // The README published one message just before.
                    let data =
                        dir.join(&args[args.iter().position(|a| a == "--data").unwrap() + 1]);
                    wait_for(
                        "the README's reading to be stored",
                        Duration::from_secs(60),
                        || (stats(&data)["readings"]["stored"].as_u64() == Some(1)).then_some(()),
                    );
                    let mut cmd = Command::new(GAPLESS);
                    cmd.args(&args);
                    Some(run_ok(cmd, dir, line))
                }
                _ => {
                    let mut cmd = Command::new(GAPLESS);
                    cmd.args(&args);
                    Some(run_ok(cmd, dir, line))
                }
            }
        } else {
            let w: Vec<&str> = w.iter().map(String::as_str).collect();
            match w.as_slice() {
                ["tools/test.sh", ..] => {
                    // This very test runs under it: only that it is there.
                    let script = Path::new(ROOT).join("tools/test.sh");
                    let mode = std::os::unix::fs::PermissionsExt::mode(
                        &std::fs::metadata(&script).unwrap().permissions(),
                    );
                    assert!(mode & 0o111 != 0, "tools/test.sh is not executable");
                    None
                }
                // Long runs of other tools, documented: that the script is
                // there (its targets build in tests/hostile's corpus replay).
                ["cargo", "install", "cargo-fuzz"] => None,
                ["tools/fuzz/run.sh", ..] => {
                    let script = Path::new(ROOT).join("tools/fuzz/run.sh");
                    assert!(script.exists(), "{line}: no tools/fuzz/run.sh");
                    None
                }
                ["mosquitto_pub", rest @ ..] => {
                    let mut cmd = Command::new("mosquitto_pub");
                    cmd.args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
                        .args(rest);
                    Some(run_ok(cmd, dir, line))
                }
                ["duckdb", "-c", sql] => {
                    // DuckDB's Python module runs the same SQL as its CLI.
                    let mut cmd = Command::new(&python);
                    cmd.args([
                        "-c",
                        "import duckdb, sys\nrows = duckdb.sql(sys.argv[1]).fetchall()\n\
                         assert rows, 'no rows'\nprint(rows)",
                        sql,
                    ]);
                    Some(run_ok(cmd, dir, line))
                }
                ["python3", script, rest @ ..] => {
                    let mut cmd = Command::new(&python);
                    cmd.arg(Path::new(ROOT).join(script)).args(rest);
                    Some(run_ok(cmd, dir, line))
                }
                _ => panic!("README command not covered by tests/readme: {line}"),
            }
        };
        if let (Some(file), Some(out)) = (redirect, &out) {
            std::fs::write(dir.join(file), out).unwrap();
        }
        ran += usize::from(out.is_some());
    }
    assert!(ran >= 10, "ran only {ran} of the README's commands");
    if let Some(mut s) = serving.take() {
        // SIGTERM seals everything and exits 0.
        let _ = Command::new("kill")
            .args(["-TERM", &s.child.id().to_string()])
            .status();
        let status = s.child.wait().unwrap();
        assert!(status.success(), "serve: {status}\n{}", s.log_text());
    }
}

/// The commands `benches/BENCHMARKS.md` gives for each figure are ones the
/// CLI accepts.
#[test]
fn benchmark_commands_parse() {
    let mut n = 0;
    for cell in BENCHMARKS.split('`').skip(1).step_by(2) {
        let w = words(cell);
        if w.len() < 2 || w[0] != "gapless" {
            continue;
        }
        let args = gapless_args(&w).unwrap();
        assert_parses(&args, cell);
        n += 1;
    }
    assert!(n >= 10, "found only {n} gapless commands in BENCHMARKS.md");
}

#[test]
fn words_and_comments_split_as_a_shell_would() {
    assert_eq!(
        words(r#"duckdb -c "SELECT 'a b' FROM x" 'c d'"#),
        ["duckdb", "-c", "SELECT 'a b' FROM x", "c d"]
    );
    assert_eq!(strip_comment("a '#b' # c"), "a '#b' ");
    assert_eq!(strip_comment("a#b"), "a#b");
    let md = "```sh\na \\\n  b # x\n\n# only\n```\n```text\nno\n```\n";
    assert_eq!(commands(md, "sh"), ["a    b"]);
}
