#!/bin/sh
# Fuzzes each target for a fixed time, keeping what it finds under
# tests/fuzz/<target>/: the corpus in corpus/, crashes (and inputs that
# hang or run out of memory) in crashes/. Then minimise (see the README):
#   tools/fuzz/run.sh 600 decimal decode_native      # 10 minutes each
#   tools/fuzz/run.sh 600                            # every target
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on stable Rust it runs with
# RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly-only flags to rustc).
set -eu
secs=${1:-600}
[ $# -gt 0 ] && shift
root=$(cd "$(dirname "$0")/../.." && pwd)
targets=${*:-"decode_native decode_wmbusmeters decode_lorawan decimal journal_replay registry config commit_log ledger"}
cd "$root"
for t in $targets; do
    mkdir -p "tests/fuzz/$t/corpus" "tests/fuzz/$t/crashes"
    case $t in
        journal_replay|commit_log|ledger) max_len=32768 ;;
        *) max_len=8192 ;;
    esac
    RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tools/fuzz -O -a -s none "$t" \
        "tests/fuzz/$t/corpus" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
        -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -artifact_prefix="tests/fuzz/$t/crashes/" -print_final_stats=1
done
