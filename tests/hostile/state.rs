//! Issue 18 item 6b: `_state/alerts_since` was written in place, so a crash
//! in the middle left it empty, and the next start silently took "now" as
//! the registry's first start. It is replaced atomically now, and a file
//! that does not hold a time stops the start with its name.

use std::time::Duration;

use crate::support::*;

#[test]
fn a_torn_alerts_since_stops_the_start_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(tmp.path());
    let data = tmp.path().join("data");
    // A first start writes it whole.
    let mut g = Gapless::start(&broker.url(), &data, &[]);
    assert_eq!(g.terminate(), Some(0));
    let since = data.join("_state/alerts_since");
    let text = std::fs::read_to_string(&since).unwrap();
    assert!(text.trim().parse::<i64>().is_ok(), "{text:?}");
    assert!(!data.join("_state/.alerts_since.tmp").exists());
    // What an in-place write torn by a crash leaves.
    std::fs::write(&since, b"").unwrap();
    let d = data.to_str().unwrap();
    let (code, _, err) = run_gapless(
        &["serve", "--broker", &broker.url(), "--data", d],
        Duration::from_secs(60),
    );
    assert_ne!(code, 0, "started on a torn alerts_since: {err}");
    assert!(
        err.contains("alerts_since") && err.contains("not a time"),
        "{err}"
    );
}
