#!/usr/bin/env bash
# Builds the discnn image without reaching a container registry: the driver and executor are
# built here as static binaries (their own target dir, so the normal build stays valid), then
# copied into a FROM-scratch image.
#
#   deploy/build-image.sh [TAG]        (default discnn:local; $DISCNN_IMAGE also sets it)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
tag="${1:-${DISCNN_IMAGE:-discnn:local}}"
target=x86_64-unknown-linux-gnu
target_dir="$root/target/static"

if [ "$(uname -m)" != x86_64 ]; then
    echo "build-image.sh: static glibc builds are set up for x86_64 only (this is $(uname -m))" >&2
    exit 1
fi

echo "building static driver and executor into $target_dir ..." >&2
# --target keeps +crt-static away from build scripts and proc macros, which must stay dynamic.
(cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" --target-dir "$target_dir" \
    --bin driver --bin executor)

stage="$here/bin-from-build-image.sh"
rm -rf "$stage"
mkdir -p "$stage"
for bin in driver executor; do
    src="$target_dir/$target/release/$bin"
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
