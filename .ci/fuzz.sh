#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for FUZZ_SECONDS each (default 60), starting from
# the committed seeds in fuzz/seeds/<target>; fails on the first crash (the input is left
# in fuzz/artifacts/<target>/). FUZZ_TARGETS limits the run to some targets.
#
# There is no nightly toolchain here: RUSTC_BOOTSTRAP=1 lets the stable compiler take the
# -Z flags cargo-fuzz passes (sanitizer, coverage instrumentation).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-60}
export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
cargo fuzz build -O
for target in $targets; do
  echo "--- fuzz $target for ${seconds}s"
  # New inputs go to corpus/<target> (not committed); the seeds are only read.
  mkdir -p "corpus/$target"
  cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "fuzz: every target ran ${seconds}s without a crash"
