#!/usr/bin/env bash
# Builds the discnn image without reaching a container registry: the driver and executor are
# built here as static binaries (their own target dir, so the normal build stays valid), then
# copied into a FROM-scratch image.
#
#   deploy/build-image.sh [TAG]        (default discnn:local; $DISCNN_IMAGE also sets it)
#
# A user's own build (examples/user-job) goes in the same way: its driver and executor are
# installed as `driver` and `executor`, so deploy/docker-compose.yml runs them unchanged.
#
#   deploy/build-image.sh --manifest-path examples/user-job/Cargo.toml \
#       --driver my-driver --executor my-executor user-job:local
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
manifest="$root/Cargo.toml"
driver_bin=driver
executor_bin=executor
tag="${DISCNN_IMAGE:-discnn:local}"
while [ $# -gt 0 ]; do
    case "$1" in
        --manifest-path) manifest="$(realpath "$2")"; shift 2 ;;
        --driver) driver_bin="$2"; shift 2 ;;
        --executor) executor_bin="$2"; shift 2 ;;
        -*) echo "build-image.sh: unknown option $1" >&2; exit 2 ;;
        *) tag="$1"; shift ;;
    esac
done
target=x86_64-unknown-linux-gnu
target_dir="$root/target/static"

if [ "$(uname -m)" != x86_64 ]; then
    echo "build-image.sh: static glibc builds are set up for x86_64 only (this is $(uname -m))" >&2
    exit 1
fi

echo "building static $driver_bin and $executor_bin ($manifest) into $target_dir ..." >&2
# --target keeps +crt-static away from build scripts and proc macros, which must stay dynamic.
(cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --manifest-path "$manifest" --target "$target" \
    --target-dir "$target_dir" --bin "$driver_bin" --bin "$executor_bin")

stage="$here/bin-from-build-image.sh"
rm -rf "$stage"
mkdir -p "$stage"
for pair in "driver:$driver_bin" "executor:$executor_bin"; do
    bin="${pair%%:*}"
    src="$target_dir/$target/release/${pair#*:}"
    if command -v file > /dev/null && ! file -b "$src" | grep -q 'statically linked\|static-pie linked'; then
        echo "build-image.sh: $src is not a static binary: $(file -b "$src")" >&2
        exit 1
    fi
    cp "$src" "$stage/$bin"
done
if command -v strip > /dev/null; then
    strip "$stage/driver" "$stage/executor"
fi

docker build --tag "$tag" --file "$here/Dockerfile" "$here"
echo "built image $tag" >&2

# The compose file's secret; never part of the image (.dockerignore keeps it out of the context).
if [ -z "${DISCNN_SECRET_FILE:-}" ] && [ ! -e "$here/secret" ]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$here/secret")
    echo "wrote a random shared secret to $here/secret" >&2
fi
