#!/bin/sh
# cargo-skeleton.sh SRC DEST: copies the workspace's manifests and Cargo.lock
# from SRC to DEST, with a stub for every target root cargo needs to load the
# workspace: src/lib.rs (empty), src/main.rs, src/bin/* and build.rs
# (`fn main() {}`), and the tests, benches and examples of a package whose
# manifest declares them ([[test]], [[bench]], [[example]]); auto-discovered
# ones are left out, as building the bot does not need them.
#
# The Dockerfile compiles the dependencies from DEST alone: DEST changes only
# when a manifest, the lock file or the set of binaries changes, so that layer
# stays cached while sources and tests change, whatever members the workspace
# gains (what cargo-chef does, without installing it). .ci/ops-checks runs
# this script on the work tree and checks that cargo loads the result with
# --locked.
set -eu
src=$1
dest=$2
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
cd "$src"

manifests=$(find . \( -path ./target -o -path ./.git \) -prune -o -type f -name Cargo.toml -print | sort)
for manifest in $manifests Cargo.lock; do
    mkdir -p "$dest/$(dirname "$manifest")"
    cp "$manifest" "$dest/$manifest"
done

stub() {
    [ -f "$1" ] || return 0
    mkdir -p "$dest/$(dirname "$1")"
    case "$1" in
        */src/lib.rs) : > "$dest/$1" ;;
        *) echo 'fn main() {}' > "$dest/$1" ;;
    esac
}

for manifest in $manifests; do
    dir=$(dirname "$manifest")
    for root in "$dir"/build.rs "$dir"/src/lib.rs "$dir"/src/main.rs \
        "$dir"/src/bin/*.rs "$dir"/src/bin/*/main.rs; do
        stub "$root"
    done
    for kind in test:tests bench:benches example:examples; do
        if grep -q "^\[\[${kind%%:*}\]\]" "$manifest"; then
            for root in "$dir/${kind#*:}"/*.rs "$dir/${kind#*:}"/*/main.rs; do
                stub "$root"
            done
        fi
    done
done
