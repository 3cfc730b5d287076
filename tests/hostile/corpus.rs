//! The fuzz corpus, replayed: every file the fuzzers kept (and every crash
//! they found, minimised) under `tests/fuzz/<target>/`, through the same
//! checker the fuzz target runs (`props.rs`). So CI checks on every change
//! what the long fuzz runs explored once.

use std::path::Path;

use super::props::{check, TARGETS};

/// Every file of `tests/fuzz/<target>/{corpus,crashes}`, sorted.
fn inputs(target: &str) -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(target);
    let mut out = Vec::new();
    for sub in ["corpus", "crashes"] {
        let Ok(dir) = std::fs::read_dir(root.join(sub)) else {
            continue;
        };
        for e in dir {
            let p = e.unwrap().path();
            if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn fuzz_corpus_replays_clean() {
    let mut failed = Vec::new();
    let mut total = 0;
    for target in TARGETS {
        let files = inputs(target);
        assert!(
            !files.is_empty(),
            "tests/fuzz/{target} has no corpus: run tools/fuzz/seeds.py (see its header)"
        );
        for path in files {
            total += 1;
            let data = std::fs::read(&path).unwrap();
            if std::panic::catch_unwind(|| check(target, &data)).is_err() {
                failed.push(format!("{target}: {}", path.display()));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} corpus inputs break a property (reproduce one with \
         `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tools/fuzz -O -a -s none TARGET FILE`):\n{}",
        failed.len(),
        failed.join("\n")
    );
}
