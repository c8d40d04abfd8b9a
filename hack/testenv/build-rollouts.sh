#!/usr/bin/env bash
# Builds Argo Rollouts' controller once, pinned, into the cache beside the control plane's
# binaries, with its CRDs from the same module version (for `make bench-peers`).
# Prints the directory that holds rollouts-controller and crds/. A second run builds nothing.
#
# v1.10.2 asks for Go 1.26.10; v1.10.1 is the newest v1.10.x that the machine's Go 1.26.8
# builds. Its go.mod has replace directives (k8s.io/* pinned to v0.34.5), which
# `go install module@version` refuses, so it is built as the main module, in the module
# cache's read-only copy of its own source: its go.mod and go.sum apply, nothing of it is
# committed here but the pin.
set -euo pipefail
version=v1.10.1
module=github.com/argoproj/argo-rollouts
cache=${SPRINTOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sprintops}
out="$cache/bin/argo-rollouts-${version}"
log() { echo "[build-rollouts] $*" >&2; }

if [ -x "$out/rollouts-controller" ] && [ -d "$out/crds" ]; then echo "$out"; exit 0; fi
mkdir -p "$out"
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
src=$(cd "$tmp" && go mod download -json "${module}@${version}" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
log "building rollouts-controller ${version}; the first build takes several minutes"
(cd "$src" && CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X ${module}/utils/version.version=${version#v}" \
  -o "$tmp/rollouts-controller" ./cmd/rollouts-controller)
mkdir -p "$tmp/crds"
cp "$src"/manifests/crds/*-crd.yaml "$tmp/crds/"
chmod -R u+w "$tmp/crds"
rm -rf "$out/crds"
mv "$tmp/rollouts-controller" "$tmp/crds" "$out"/
log "rollouts-controller in $out"
echo "$out"
