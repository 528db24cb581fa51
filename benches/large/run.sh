#!/usr/bin/env bash
# Training on features larger than memory, measured.
#
#   benches/large/run.sh [WORK_DIR] [LIMIT_BYTES]
#
# 1. Writes a synthetic data set of 4.10 GiB of features (4,300,000 rows x 256
#    f32) with `large_arrays`, and a 1 % and a 10 % sample of it (its first
#    rows).
# 2. Trains one epoch on the 4.10 GiB set with `on_disk = true` under
#    `prlimit --as=LIMIT_BYTES` (default 1 GiB of address space), recording
#    wall time, peak resident memory and the bytes read (`rchar`).
# 3. Trains the 1 % sample in memory and on disk: the test metrics must be
#    equal.
# 4. Times the 10 % sample (0.41 GiB, fits in memory, warm page cache) in
#    memory and on disk, three runs each, alternating: the ratio of the
#    median training seconds per epoch.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$root/target/large}
limit=${2:-1073741824}
cd "$root"
cargo build --release -q -p mtl-cli -p mtl-benches --bin mtl --bin large_arrays
mtl=$root/target/release/mtl
gen=$root/target/release/large_arrays
mkdir -p "$work"
for spec in full:4300000 tenth:430000 sample:43000; do
  name=${spec%%:*}
  rows=${spec##*:}
  [ -f "$work/$name/test_x.npy" ] || "$gen" "$work/$name" --rows "$rows" --features 256
done

config() { # data-dir on_disk
  cat <<TOML
seed = 1
[data]
dir = "$1"
on_disk = $2
[model]
arch = "hps"
[model.encoder]
name = "mlp"
hidden = [64]
[train]
epochs = 1
batch_size = 256
optimizer = { name = "adam", lr = 1e-3 }
balancer = { name = "equal" }
TOML
}

# The number after `"train_seconds":` in a run's summary.json.
train_seconds() { tr -d ' \n' < "$1/summary.json" | grep -o '"train_seconds":[0-9.eE+-]*' | cut -d: -f2; }
# The test scores of a run's summary.json, one per line.
scores() { tr -d ' \n' < "$1/summary.json" | grep -o '\["[A-Za-z0-9_.]*",-\?[0-9][0-9.eE+-]*\]'; }

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u '+%F %H:%M UTC')"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# 2. The 4.10 GiB set under the address-space limit.
config "$work/full" true > "$work/full.toml"
rm -rf "$work/run-full"
rchar=0
/usr/bin/time -f '%e %M' -o "$work/time-full" \
  prlimit --as="$limit" "$mtl" train "$work/full.toml" --out "$work/run-full" --threads 2 --quiet &
launcher=$!
while kill -0 "$launcher" 2>/dev/null; do
  pid=$(pgrep -f "^$mtl train $work/full.toml" | head -1 || true)
  if [ -n "$pid" ]; then
    r=$(sed -n 's/^rchar: //p' "/proc/$pid/io" 2>/dev/null || true)
    [ -n "$r" ] && rchar=$r
  fi
  sleep 0.2
done
wait "$launcher"
read -r wall rss < "$work/time-full"
features=$(stat -c %s "$work/full/train_x.npy")
echo "4.10 GiB set, on disk, prlimit --as=$limit: epoch $(train_seconds "$work/run-full") s" \
  "(process $wall s), peak RSS $((rss / 1024)) MiB," \
  "read $(awk -v r="$rchar" -v f="$features" 'BEGIN { printf "%.2f", r / f }') x the features file" \
  "(rchar $rchar bytes, sampled every 0.2 s)"

# 3. The 1 % sample: in memory and on disk give the same test scores.
for mode in false true; do
  config "$work/sample" "$mode" > "$work/sample-$mode.toml"
  rm -rf "$work/run-sample-$mode"
  "$mtl" train "$work/sample-$mode.toml" --out "$work/run-sample-$mode" --threads 2 --quiet
done
if diff <(scores "$work/run-sample-false") <(scores "$work/run-sample-true") > /dev/null; then
  echo "1 % sample: in memory and on disk give the same $(scores "$work/run-sample-true" | wc -l) test scores:" \
    "$(scores "$work/run-sample-true" | tr '\n' ' ')"
else
  echo "1 % sample: the test scores differ"; diff <(scores "$work/run-sample-false") <(scores "$work/run-sample-true") || true
  exit 1
fi

# 4. The 10 % sample, warm page cache: epoch time on disk against in memory.
for mode in false true; do config "$work/tenth" "$mode" > "$work/tenth-$mode.toml"; done
cat "$work/tenth/train_x.npy" > /dev/null
declare -A times
for rep in 1 2 3; do
  for mode in false true; do
    rm -rf "$work/run-tenth-$mode"
    "$mtl" train "$work/tenth-$mode.toml" --out "$work/run-tenth-$mode" --threads 2 --quiet
    times[$mode]+="$(train_seconds "$work/run-tenth-$mode") "
  done
done
median() { tr ' ' '\n' <<< "$1" | grep . | sort -g | sed -n 2p; }
mem=$(median "${times[false]}")
disk=$(median "${times[true]}")
echo "10 % sample (0.41 GiB): epoch in memory ${times[false]}s, on disk ${times[true]}s;" \
  "medians $mem s and $disk s, ratio $(awk -v a="$disk" -v b="$mem" 'BEGIN { printf "%.2f", a / b }')"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
