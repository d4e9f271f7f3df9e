#!/usr/bin/env bash
# verify-generated.sh CONTROLLER_GEN
# Fails when the committed CRDs, RBAC role or deepcopy code differ from what the
# markers generate, without needing a clean git tree: it generates into a scratch
# copy and compares.
set -euo pipefail
gen=$1
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$gen" rbac:roleName=manager-role crd webhook paths="./..." \
	output:crd:artifacts:config="$tmp/crd" output:rbac:artifacts:config="$tmp/rbac" \
	output:webhook:artifacts:config="$tmp/webhook"
stale=0
diff -r "$tmp/crd" config/crd/bases || stale=1
diff "$tmp/rbac/role.yaml" config/rbac/role.yaml || stale=1
if [ -d "$tmp/webhook" ]; then
	diff "$tmp/webhook/manifests.yaml" config/webhook/manifests.yaml || stale=1
fi

go run ./hack/chartsync -out "$tmp/chart"
diff -r "$tmp/chart/templates/crds" charts/aiquota/templates/crds || stale=1
diff -r "$tmp/chart/files" charts/aiquota/files || stale=1

go run ./hack/apidocs >"$tmp/reference.md"
diff "$tmp/reference.md" docs/reference.md || stale=1

# Deepcopy is written in place; compare against a saved copy and restore it.
cp api/v1alpha1/zz_generated.deepcopy.go "$tmp/deepcopy.go"
"$gen" object:headerFile="hack/boilerplate.go.txt" paths="./api/..."
if ! diff "$tmp/deepcopy.go" api/v1alpha1/zz_generated.deepcopy.go; then
	stale=1
fi
cp "$tmp/deepcopy.go" api/v1alpha1/zz_generated.deepcopy.go

if [ "$stale" = 1 ]; then
	echo "generated files are stale: run 'make manifests generate docs' and commit the result" >&2
	exit 1
fi
echo "generated files are up to date"
