#!/bin/sh
# Run palisade's fuzz targets for a set time each.
#
#   fuzz/run.sh TARGET SECONDS     one of: packet flow_key manifest probes
#   fuzz/run.sh all SECONDS        each target in turn, SECONDS each
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and clang for libFuzzer. On a stable
# toolchain it sets RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly-only flags). Seeds
# the corpus on first use; crashes land in fuzz/artifacts/TARGET/. Extra arguments
# after SECONDS go to libFuzzer (e.g. -jobs=2).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
target=${1:?usage: fuzz/run.sh TARGET|all SECONDS [libFuzzer args...]}
seconds=${2:?usage: fuzz/run.sh TARGET|all SECONDS [libFuzzer args...]}
shift 2
extra="$*"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"

seed() {
    corpus="$here/corpus/$1"
    if [ -n "$(ls -A "$corpus" 2>/dev/null)" ]; then return; fi
    mkdir -p "$corpus"
    case "$1" in
        manifest)
            find "$root/tests/data" "$root/examples" -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) \
                -size -8k | while read -r f; do cp "$f" "$corpus/$(echo "$f" | sed "s|$root/||; s|/|_|g")"; done ;;
        *)
            # Built by `cargo fuzz build` below with the fuzz flags, or else plainly.
            if [ -x "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/seeds" ]; then
                "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/seeds"
            else
                (cd "$here" && cargo run --quiet --release --bin seeds)
            fi ;;
    esac
    # Past findings seed the corpus too.
    cp "$here/regressions/$1/"* "$corpus/" 2>/dev/null || true
}

run() {
    seed "$1"
    echo "== fuzz $1 for ${seconds}s"
    # max_len: frames up to a jumbo-ish 4 KiB, manifests and probe files up to 16 KiB.
    case "$1" in manifest|probes) max=16384 ;; *) max=4096 ;; esac
    (cd "$here" && cargo fuzz run "$1" "corpus/$1" -- -max_total_time="$seconds" -max_len="$max" \
        -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 $extra)
}

(cd "$here" && cargo fuzz build)
if [ "$target" = all ]; then
    for t in packet flow_key manifest probes; do run "$t"; done
else
    run "$target"
fi
