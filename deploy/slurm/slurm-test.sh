#!/usr/bin/env bash
# deploy/discnn.sbatch on a real single-node Slurm (run by .ci/run): munged, slurmctld and slurmd
# started here without systemd — their key, configuration, state and logs under a temporary
# directory, nothing written to /etc — with SLURM_CONF pointing at it, proctrack/linuxproc and
# task/none, and the node declaring 4 CPUs so a 3-task allocation fits a 2-core machine. Then
# `sbatch --wait` of a 3-task allocation runs a wordcount and a short cnn-job through the
# script, and their outputs must equal the same jobs run locally. Everything is stopped on exit.
#
# Without slurm-wlm and munge it fails when CI=true and is skipped (saying so) otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
say() { echo "slurm-test: $*" >&2; }
fail() {
    say "FAIL: $*"
    exit 1
}
unavailable() {
    [ "${CI:-}" = true ] && fail "$1 (CI=true: Slurm is required here)"
    say "SKIPPED: $1"
    exit 0
}
for tool in munged slurmctld slurmd sbatch srun scontrol; do
    command -v "$tool" > /dev/null || PATH="$PATH:/usr/sbin" command -v "$tool" > /dev/null \
        || unavailable "no $tool (apt-get install slurm-wlm munge)"
done
export PATH="$PATH:/usr/sbin"

# The programs under test (default: a release build, made here).
bin="${DISCNN_BIN:-$root/target/release}"
if [ -z "${DISCNN_BIN:-}" ]; then
    (cd "$root" && cargo build --release -q --bin driver --bin executor)
fi
[ -x "$bin/driver" ] && [ -x "$bin/executor" ] || fail "no driver and executor in $bin"

t="$(mktemp -d "${TMPDIR:-/tmp}/discnn-slurm-test.XXXXXX")"
chmod 700 "$t"
pids=()
teardown() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        for log in "$t"/*.log "$t"/jobs/*.out; do
            [ -f "$log" ] && { say "--- $log"; tail -n 20 "$log" >&2; }
        done
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
    wait 2> /dev/null || true
    rm -rf "$t"
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
user="$(id -un)"
node="$(hostname)"

# --- munge: its own key and socket ---------------------------------------------------------
dd if=/dev/urandom of="$t/munge.key" bs=1024 count=1 status=none
chmod 400 "$t/munge.key"
# --force: the socket's directory is under /tmp, which munged calls insecure.
munged --force --foreground --key-file="$t/munge.key" --socket="$t/munge.sock" \
    --pid-file="$t/munged.pid" --log-file="$t/munged.log" --seed-file="$t/munged.seed" \
    > "$t/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$t/munge.sock" ] && break; sleep 0.1; done
[ -S "$t/munge.sock" ] || fail "munged did not start"

# --- Slurm: one node, this host -----------------------------------------------------------
mkdir -p "$t/state" "$t/spool" "$t/jobs"
export SLURM_CONF="$t/slurm.conf"
cat > "$SLURM_CONF" << EOF
ClusterName=discnn-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
AuthInfo=socket=$t/munge.sock
CredType=cred/munge
StateSaveLocation=$t/state
SlurmdSpoolDir=$t/spool
SlurmctldPidFile=$t/slurmctld.pid
SlurmdPidFile=$t/slurmd.pid
SlurmctldLogFile=$t/slurmctld.log
SlurmdLogFile=$t/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=$node NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -i -f "$SLURM_CONF" > "$t/slurmctld.log.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" > "$t/slurmd.log.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    sinfo -h -o %T 2> /dev/null | grep -q idle && break
    sleep 0.2
done
sinfo -h -o %T 2> /dev/null | grep -q idle || fail "the node did not come up: $(sinfo 2>&1)"
say "Slurm up: $(sinfo -h -o '%P %D %c %T')"

# --- the jobs, through the sbatch script, and locally ---------------------------------------
data="$t/cifar"
python3 - "$data" << 'EOF'
import os, random, sys
out = sys.argv[1]
os.makedirs(out)
rng = random.Random(3)
names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
for name in names:
    n = 40 if name.startswith("data") else 30
    body = bytearray()
    for _ in range(n):
        label = rng.randrange(10)
        body.append(label)
        body.extend(min(255, max(0, 25 * label + rng.randrange(-20, 21))) for _ in range(3072))
    open(os.path.join(out, name), "wb").write(body)
EOF
printf 'the quick brown fox\njumps over the lazy dog\nthe dog sleeps\n' > "$t/words.txt"

batch() { # name, then the job and its options
    local name="$1"
    shift
    (cd "$t/jobs" && DISCNN_BIN="$bin" DISCNN_WORK="$t/jobs/$name" DISCNN_PORT="$(free_port)" \
        sbatch --wait --ntasks=3 --output="$t/jobs/$name.out" "$here/discnn.sbatch" "$@") \
        > /dev/null || fail "sbatch $name failed: $(tail -n 5 "$t/jobs/$name.out")"
}
batch wordcount wordcount --input "$t/words.txt" --output "$t/wc-slurm"
"$bin/driver" submit --no-progress --master 'local[2]' wordcount --input "$t/words.txt" \
    --output "$t/wc-local" > /dev/null
diff -r "$t/wc-slurm" "$t/wc-local" > /dev/null || fail "wordcount under Slurm differs from the local run"
say "wordcount under Slurm equals the local run"

cnn=(cnn-job --data "$data" --epochs 2 --partitions 4)
batch cnn-job "${cnn[@]}" --output "$t/cnn-slurm"
"$bin/driver" submit --no-progress --master 'local[2]' "${cnn[@]}" --output "$t/cnn-local" \
    > /dev/null 2>&1
cmp -s "$t/cnn-slurm/model.safetensors" "$t/cnn-local/model.safetensors" \
    || fail "the cnn-job's model under Slurm differs from the local run's"
say "cnn-job under Slurm: the model is byte-identical to the local run's"
say "PASS"
