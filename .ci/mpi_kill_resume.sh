#!/usr/bin/env bash
# Kills one rank of `mpirun -np 2 mtl train` with SIGKILL once a checkpoint
# exists (rank 1 in one run, rank 0 in another), checks that the whole job
# ends (non-zero, within a bounded time, no hang), then resumes each run
# directory with `--resume`, the first on 2 processes and the second on 1,
# and checks that nothing was lost: every epoch is in metrics.csv, and the
# test scores equal those of an uninterrupted 2-process run (on 2
# processes: exactly, with bit-identical parameters; on 1 process: to 3
# decimals). Usage: mpi_kill_resume.sh MTL
set -euo pipefail
mtl=$(realpath "$1")
work=$(mktemp -d)
mpirun_pid=
cleanup() {
  if [ -n "$mpirun_pid" ]; then kill -KILL "$mpirun_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
mpirun=(mpirun --allow-run-as-root --oversubscribe)
epochs=4
# Long enough epochs (about half a second each) that the kill lands in the
# middle of the run (the script checks that it did); a classification and
# regression data set whose scores are stable under the rounding
# differences between 1 and 2 processes.
cat > "$work/cfg.toml" <<TOML
seed = 5
[data]
builtin = "multimnist"
limit = 2000
[model]
arch = "hps"
[model.encoder]
name = "mlp"
hidden = [128]
[train]
epochs = $epochs
batch_size = 32
balancer = { name = "upgrad" }
optimizer = { name = "sgd", lr = 0.05 }
TOML

fail() { echo "mpi_kill_resume: $*" >&2; exit 1; }

# Polls `condition` (a command) every 50 ms for at most $1 seconds.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

# The pid of rank $2 of the mtl processes training into run directory $1:
# an `mtl` process whose command line names the directory and whose
# environment carries the rank the MPI starter gave it.
rank_pid() {
  local dir=$1 rank=$2 pid
  for pid in $(pgrep -f -- "--out $dir" || true); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = mtl ] || continue
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null \
      | grep -qx -e "OMPI_COMM_WORLD_RANK=$rank" -e "PMI_RANK=$rank"; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

alive() { kill -0 "$mpirun_pid" 2>/dev/null; }
gone() { ! alive; }

# Starts `mpirun -np 2` training into $work/$1 and, once its first
# checkpoint exists, kills rank $2 with SIGKILL; checks that the job ends,
# with a non-zero status, before the run would have finished.
train_and_kill() {
  local run=$1 rank=$2 pid status killed_at done_epochs
  "${mpirun[@]}" -np 2 "$mtl" train "$work/cfg.toml" --out "$work/$run" --quiet \
    > "$work/$run.log" 2>&1 &
  mpirun_pid=$!
  wait_for 120 compgen -G "$work/$run/ckpt-*" >/dev/null || fail "$run: no checkpoint after 120 s"
  wait_for 10 rank_pid "$work/$run" "$rank" >/dev/null || fail "$run: rank $rank's process not found"
  pid=$(rank_pid "$work/$run" "$rank")
  kill -KILL "$pid"
  killed_at=$(date +%s%N)
  # The job must end on its own: a rank left waiting in a collective would hang.
  wait_for 60 gone || fail "$run: mpirun still running 60 s after rank $rank was killed (a hang)"
  status=0
  wait "$mpirun_pid" || status=$?
  mpirun_pid=
  [ "$status" -ne 0 ] || fail "$run: mpirun exited 0 although rank $rank was killed"
  [ ! -e "$work/$run/summary.json" ] \
    || fail "$run: the run finished before the kill; make its epochs longer"
  done_epochs=$(ls -d "$work/$run"/ckpt-* | sed 's/.*ckpt-0*//' | sort -n | tail -1)
  echo "$run: rank $rank (pid $pid) killed after $done_epochs of $epochs epochs;" \
    "mpirun ended $((($(date +%s%N) - killed_at) / 1000000)) ms later with status $status"
}

# The uninterrupted reference.
"${mpirun[@]}" -np 2 "$mtl" train "$work/cfg.toml" --out "$work/full" --quiet
# Rank 1 killed, resumed on 2 processes; rank 0 (the one that writes)
# killed, resumed on 1 process.
train_and_kill killed 1
train_and_kill killed1 0
"${mpirun[@]}" -np 2 "$mtl" train --resume "$work/killed" --quiet
"${mpirun[@]}" -np 1 "$mtl" train --resume "$work/killed1" --quiet

# Every test metric of summary.json (`["name", value]`), one "name value" per line.
scores() {
  tr -d ' \n' < "$1/summary.json" | grep -o '\["[A-Za-z0-9_.]*",-\?[0-9][0-9.eE+-]*\]' \
    | tr -d '[]"' | tr ',' ' ' | sort
}
# Compares the scores of runs $1 and $2 with tolerance $3 (0: identical).
compare() {
  paste <(scores "$1") <(scores "$2") | awk -v tol="$3" -v what="$4" '
    { n++; d = $2 - $4; if (d < 0) d = -d; if (d > max) max = d;
      if ($1 != $3 || (tol == 0 ? $2 != $4 : d >= tol)) { print "differs: " $0; bad = 1 } }
    END { if (n == 0) { print "no scores in summary.json"; exit 1 }
          if (bad) exit 1; printf "%d test scores agree (largest difference %.1e): %s\n", n, max, what }'
}
for run in killed killed1; do
  rows=$(($(wc -l < "$work/$run/metrics.csv") - 1))
  [ "$rows" -eq "$epochs" ] || fail "$run/metrics.csv has $rows epochs, expected $epochs"
  grep -q "\"epochs\": $epochs," "$work/$run/summary.json" \
    || fail "$run/summary.json does not report $epochs epochs"
done
compare "$work/full" "$work/killed" 0 "2 processes killed and resumed on 2 = uninterrupted, exactly"
cmp "$work/full/best/params.safetensors" "$work/killed/best/params.safetensors" \
  || fail "resumed on 2 processes: best parameters differ from the uninterrupted run"
echo "best parameters bit-identical to the uninterrupted run"
# The whole history, timing aside (columns 4 and 5 hold the seconds of an
# epoch and those spent measuring task relations).
cmp <(cut -d, -f4,5 --complement "$work/full/metrics.csv") \
  <(cut -d, -f4,5 --complement "$work/killed/metrics.csv") \
  || fail "resumed on 2 processes: metrics.csv differs from the uninterrupted run"
echo "metrics.csv equal to the uninterrupted run's, timing aside"
compare "$work/full" "$work/killed1" 5e-4 "2 processes killed and resumed on 1 = uninterrupted to 3 decimals"
