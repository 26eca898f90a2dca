#!/usr/bin/env bash
# End-to-end test of the docker-compose cluster (run by .ci/run):
#   build the image; bring up a driver and 4 executors; wait, through `driver status --json`, for
#   4 registered executors; submit a short cnn-job on a slice of CIFAR-10 and `docker kill` one
#   executor while it runs (the job must still finish, with a model that cnn-eval reads and
#   that is byte-identical to the same job run undisturbed in one process);
#   `docker network disconnect` another and check the driver declares it lost within the
#   heartbeat timeout; check the driver's web UI and REST API (published port, basic auth with
#   the secret, the killed executor listed as lost) and its event log; tear everything down,
#   also when a step fails.
#
# With no Docker daemon it fails when CI=true and is skipped (saying so) otherwise.
# CIFAR10_DIR names the dataset to slice (default: ../shared/data/cifar-10-batches-bin beside
# the repository); without one it writes CIFAR-format records of its own.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
heartbeat_timeout=5
slice_records=2500 # per batch file: 12,500 training and 2,500 test images

say() { echo "cluster-test: $*" >&2; }
fail() {
    say "FAIL: $*"
    exit 1
}
unavailable() {
    if [ "${CI:-}" = true ]; then
        fail "$1 (CI=true: Docker is required here)"
    fi
    say "SKIPPED: $1"
    exit 0
}

command -v docker > /dev/null || unavailable "no docker command"
docker info > /dev/null 2>&1 || unavailable "no Docker daemon answers"
if docker compose version > /dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose > /dev/null; then
    compose_cmd=(docker-compose)
else
    unavailable "neither \`docker compose\` (v2) nor \`docker-compose\` (v1) is installed"
fi
command -v python3 > /dev/null || fail "python3 is needed to read driver status --json"

project="discnn-test-$$"
work="$(mktemp -d "${TMPDIR:-/tmp}/discnn-cluster-test.XXXXXX")"
export COMPOSE_PROJECT_NAME="$project"
export DISCNN_IMAGE="discnn:local"
export DISCNN_SECRET_FILE="$work/secret"
export DISCNN_HEARTBEAT_TIMEOUT="$heartbeat_timeout"
export DISCNN_PORT="${DISCNN_TEST_PORT:-17077}"
export DISCNN_UI_PORT="${DISCNN_TEST_UI_PORT:-14040}"
compose() { "${compose_cmd[@]}" -f "$here/docker-compose.yml" "$@"; }

teardown() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        say "logs of the failed run:"
        compose logs --no-color --tail=40 >&2 2>/dev/null || true
    fi
    compose down --volumes --remove-orphans --timeout 5 > /dev/null 2>&1 || true
    rm -rf "$work"
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# --- the data: a slice of CIFAR-10, or records of our own ------------------------------------
data="$work/cifar-10-batches-bin"
mkdir -p "$data"
source_dir="${CIFAR10_DIR:-$root/../shared/data/cifar-10-batches-bin}"
python3 - "$source_dir" "$data" "$slice_records" << 'EOF'
import os, random, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
record = 1 + 3 * 32 * 32
names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
have = all(os.path.isfile(os.path.join(src, f)) for f in names)
rng = random.Random(7)
for name in names:
    if have:
        with open(os.path.join(src, name), "rb") as f:
            body = f.read(n * record)
    else:
        # A learnable stand-in: each class is a brightness level plus noise.
        out = bytearray()
        for _ in range(n):
            label = rng.randrange(10)
            out.append(label)
            out.extend(min(255, max(0, 25 * label + rng.randrange(-20, 21))) for _ in range(record - 1))
        body = bytes(out)
    with open(os.path.join(dst, name), "wb") as f:
        f.write(body)
print("a slice of " + src if have else "synthetic CIFAR-format records", file=sys.stderr)
EOF
export CIFAR10_DIR="$data"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DISCNN_SECRET_FILE"

# --- the image and the cluster ------------------------------------------------------------------
"$here/build-image.sh" "$DISCNN_IMAGE"
compose up -d --no-build
say "cluster up (project $project)"

driver_container="$(compose ps -q driver)"
[ -n "$driver_container" ] || fail "no driver container"
status_json() {
    docker exec "$driver_container" driver status --master=127.0.0.1:7077 \
        --secret-file=/run/secrets/discnn_secret --json
}
# Prints what a python expression over the status object `s` gives ("" when status fails).
status_eval() {
    status_json 2> /dev/null | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)" 2> /dev/null || true
}
container_ip() {
    docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"
}
# A field (id, state, tasks_finished …) of the executor the driver lists at the container's address.
executor_field() { # container field
    local ip
    ip="$(container_ip "$1")"
    status_eval "next((e['$2'] for e in s['executors'] if e['address'].split(':')[0] == '$ip'), '')"
}

deadline=$((SECONDS + 60))
alive=""
while [ "$SECONDS" -lt "$deadline" ]; do
    alive="$(status_eval "sum(e['state'] == 'alive' for e in s['executors'])")"
    [ "$alive" = 4 ] && break
    sleep 1
done
[ "$alive" = 4 ] || fail "expected 4 alive executors within 60 s, driver status says ${alive:-nothing}"
say "4 executors registered"

mapfile -t executors < <(compose ps -q executor)
[ "${#executors[@]}" -eq 4 ] || fail "expected 4 executor containers, found ${#executors[@]}"
victim="${executors[0]}"
cut_off="${executors[1]}"

# --- an executor killed in the middle of a job ------------------------------------------------
job_args=(cnn-job --data=/data/cifar-10-batches-bin --epochs=4 --no-progress)
compose run --rm -T submit "${job_args[@]}" --output=/output/ci \
    > "$work/job.out" 2> "$work/job.err" &
job=$!

victim_id=""
deadline=$((SECONDS + 120))
while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$job" 2> /dev/null || break
    state="$(status_eval "s['jobs'][-1]['state'] if s['jobs'] else ''")"
    done_here="$(executor_field "$victim" tasks_finished)"
    if [ "$state" = running ] && [ "${done_here:-0}" -gt 0 ]; then
        victim_id="$(executor_field "$victim" id)"
        break
    fi
    sleep 0.5
done
[ -n "$victim_id" ] || fail "the job never ran tasks on executor container ${victim:0:12}: $(cat "$work/job.err")"
docker kill "$victim" > /dev/null
say "killed executor $victim_id (container ${victim:0:12}) while the job was running"
kill -0 "$job" 2> /dev/null || fail "the job ended before the executor was killed"

wait "$job" || fail "the job failed after an executor was killed: $(tail -5 "$work/job.err")"
cat "$work/job.out" >&2
now_ms() { local t="${EPOCHREALTIME//[.,]/}"; echo $((t / 1000)); }
# Polls every 0.5 s, up to $2 ms after time $3 (ms), until the driver calls executor $1 lost;
# prints its last state and the time, in ms after $3, of the status request that showed it.
wait_lost() {
    local state="" asked
    while :; do
        asked="$(now_ms)"
        state="$(status_eval "next((e['state'] for e in s['executors'] if e['id'] == '$1'), '')")"
        [ "$state" = lost ] && break
        [ $((asked - $3)) -gt "$2" ] && break
        sleep 0.5
    done
    echo "$state $((asked - $3))"
}
read -r victim_state _ <<< "$(wait_lost "$victim_id" $((heartbeat_timeout * 1000 + 3000)) "$(now_ms)")"
[ "$victim_state" = lost ] || fail "the killed executor $victim_id is '$victim_state', expected lost"
# --- the UI: published on the host's loopback, the secret as the password ---------------------
python3 - "http://127.0.0.1:$DISCNN_UI_PORT" "$DISCNN_SECRET_FILE" "$victim_id" << 'EOF' \
    || fail "the driver's UI does not show the run"
import base64, json, sys, urllib.error, urllib.request
ui, secret, victim = sys.argv[1], open(sys.argv[2]).read().strip(), sys.argv[3]
def get(path, auth=True):
    req = urllib.request.Request(ui + path)
    if auth:
        token = base64.b64encode(f"anyone:{secret}".encode()).decode()
        req.add_header("Authorization", "Basic " + token)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)
try:
    get("/api/v1/applications", auth=False)
    raise SystemExit("the UI answered without the secret")
except urllib.error.HTTPError as e:
    assert e.code == 401, e.code
apps = get("/api/v1/applications")
assert apps and apps[0]["name"] == "cnn-job", apps
app = apps[0]["id"]
states = {e["id"]: e["state"] for e in get(f"/api/v1/applications/{app}/executors")}
assert states.get(victim) == "lost", states
rows = get(f"/api/v1/applications/{app}/training")
assert len(rows) == 4, rows
print(f"cluster-test: the UI shows {app}: {len(rows)} epochs, executors {states}", file=sys.stderr)
EOF
docker cp "$driver_container:/output/events" "$work/events" \
    || fail "the driver wrote no event log"
ls "$work/events"/*.jsonl.zst > /dev/null 2>&1 || fail "no finished event log: $(ls "$work/events")"
say "the driver's event log: $(ls "$work/events")"
compose run --rm -T submit cnn-eval --model=/output/ci/model.safetensors \
    --data=/data/cifar-10-batches-bin --json > "$work/eval.json" \
    || fail "cnn-eval could not read the job's model"
python3 - "$work/eval.json" << 'EOF' || fail "cnn-eval's report is not valid: $(cat "$work/eval.json")"
import json, math, sys
r = json.load(open(sys.argv[1]))
assert 0.0 <= r["accuracy"] <= 1.0 and len(r["per_class_recall"]) == 10, r
assert sum(map(sum, r["confusion"])) > 0 and not math.isnan(r["mean_recall"]), r
print(f"cluster-test: the model scores {r['accuracy']:.4f} on the test records", file=sys.stderr)
EOF

# The same job undisturbed, in one process: losing an executor must not have changed a bit.
compose run --rm -T --entrypoint driver submit submit --master='local[2]' "${job_args[@]}" \
    --output=/output/ci-local > /dev/null 2> "$work/local.err" \
    || fail "the local run of the job failed: $(tail -5 "$work/local.err")"
for run in ci ci-local; do
    docker cp "$driver_container:/output/$run/model.safetensors" "$work/$run.safetensors"
done
cmp -s "$work/ci.safetensors" "$work/ci-local.safetensors" \
    || fail "the model trained through the kill differs from the same job run undisturbed"
say "the model is byte-identical to the same job run undisturbed in one process"

# --- an executor cut off from the network ----------------------------------------------------
cut_id="$(executor_field "$cut_off" id)"
[ -n "$cut_id" ] || fail "no executor registered from container ${cut_off:0:12}"
network="$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "$cut_off")"
docker network disconnect "$network" "$cut_off"
cut_at="$(now_ms)"
# Its last heartbeat came at most 1 s before the cut, and the driver checks every 0.1 s: it
# must be lost by the timeout. The 1 s allowed beyond is this loop's 0.5 s poll and the
# `docker exec` it takes to ask.
limit_ms=$((heartbeat_timeout * 1000 + 1000))
read -r state after_ms <<< "$(wait_lost "$cut_id" "$limit_ms" "$cut_at")"
[ "$state" = lost ] && [ "$after_ms" -le "$limit_ms" ] \
    || fail "executor $cut_id is '$state' ${after_ms} ms after it was cut off (timeout ${heartbeat_timeout} s)"
say "executor $cut_id shown lost ${after_ms} ms after its network was cut (heartbeat timeout ${heartbeat_timeout} s)"
say "PASS"
