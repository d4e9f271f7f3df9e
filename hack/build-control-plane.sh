#!/usr/bin/env bash
# build-control-plane.sh: builds the kube-apiserver and etcd that envtest runs, and the
# kubectl the tests drive (same version as the API server, so no version skew), from
# source through the Go module proxy (their release downloads are not reachable here).
# Versions are pinned in hack/envtest/go.mod; binaries land in bin/k8s/<stamp>/ and are
# rebuilt only when that pin or this script changes (with a warm Go build cache that
# is a relink of a minute or so). Prints the directory for KUBEBUILDER_ASSETS.
#
# A KUBEBUILDER_ASSETS already set (setup-envtest's binaries, say) is used as it is:
# it is printed when it holds kube-apiserver and etcd, and refused otherwise, so a
# typo does not turn into a ten-minute build.
set -euo pipefail
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
	for b in kube-apiserver etcd; do
		if [ ! -x "$KUBEBUILDER_ASSETS/$b" ]; then
			echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $b; fix it, or unset it to build the control plane from source" >&2
			exit 1
		fi
	done
	if [ ! -x "$KUBEBUILDER_ASSETS/kubectl" ]; then
		echo "warning: KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no kubectl; the tests that drive kubectl and helm will fail" >&2
	fi
	echo "$KUBEBUILDER_ASSETS"
	exit 0
fi
root=$(cd "$(dirname "$0")/.." && pwd)
mod="$root/hack/envtest"
# Content only: sha256sum would also hash the file names, and so the path the script
# was called by.
stamp=$(cat "$mod/go.mod" "$mod/go.sum" "$root/hack/build-control-plane.sh" | sha256sum | cut -c1-12)
# Stamp the Kubernetes version into the binaries as a release build does: a plain
# `go build` reports v0.0.0-master, which clients that check the server version
# (helm's kubeVersion, kubectl's skew warning) reject.
k8s_version=$(awk '$1 == "k8s.io/kubernetes" {print $2}' "$mod/go.mod")
minor=$(echo "$k8s_version" | cut -d. -f2)
vpkg=k8s.io/component-base/version
k8s_ldflags="-X $vpkg.gitVersion=$k8s_version -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
dir="$root/bin/k8s/$stamp"
mkdir -p "$dir"
cd "$mod"
build() { # build NAME PACKAGE ROUGH-TIME [LDFLAGS]
	if [ -x "$dir/$1" ]; then return; fi
	echo "building $1 from source ($2); on 2 cores this takes about $3, once per pinned version" >&2
	local t0=$SECONDS
	GOFLAGS=-buildvcs=false go build -trimpath -ldflags "${4:-}" -o "$dir/$1.tmp" "$2"
	mv "$dir/$1.tmp" "$dir/$1"
	echo "built $1 in $((SECONDS - t0))s" >&2
}
build etcd go.etcd.io/etcd/server/v3 "1-2 minutes"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "6-10 minutes" "$k8s_ldflags"
build kubectl k8s.io/kubernetes/cmd/kubectl "2-4 minutes" "$k8s_ldflags"
echo "$dir"
