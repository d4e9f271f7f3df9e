#!/usr/bin/env bash
# install-tool.sh NAME PACKAGE VERSION
# Installs a Go tool into bin/NAME-VERSION with `go install` and points bin/NAME at it.
# Does nothing when that version is already there, so CI caches stay warm.
set -euo pipefail
name=$1 pkg=$2 version=$3
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
target="$bin/$name-$version"
if [ ! -x "$target" ]; then
	echo "installing $name $version ($pkg)" >&2
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	GOBIN="$tmp" GOFLAGS=-buildvcs=false go install "$pkg@$version"
	mkdir -p "$bin"
	mv "$tmp"/* "$target"
fi
ln -sf "$name-$version" "$bin/$name"
