#!/usr/bin/env bash
# Builds the local control plane's binaries once, pinned, into a cache outside the repo.
# Prints the directory that holds them. A second run with the same versions builds nothing.
# Usage: build.sh [NAME...]  (default: all of etcd, kube-*, kubectl, kwok, kwokctl, istio-crds.yaml)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kube_version=$(sed -n 's/^\s*k8s.io\/kubernetes \(v[0-9.]*\).*/\1/p' "$here/kube/go.mod")
kwok_version=v0.7.0
istio_api_version=v1.31.4
cache=${SPRINTOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sprintops}
out="$cache/bin/k8s-${kube_version}-kwok-${kwok_version}-istio-${istio_api_version}"
log() { echo "[build] $*" >&2; }

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl istio-crds.yaml)
missing=()
for b in "${wanted[@]}"; do [ -e "$out/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then echo "$out"; exit 0; fi

mkdir -p "$out"
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
minor=${kube_version#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=${kube_version} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor} -X $pkg.gitTreeState=clean"
done
pkgs=()
for b in "${missing[@]}"; do
  case $b in
    kube-*) pkgs+=("k8s.io/kubernetes/cmd/$b") ;;
    kubectl|etcd) pkgs+=("./cmd/$b") ;;
  esac
done
if [ ${#pkgs[@]} -gt 0 ]; then
  log "building ${pkgs[*]} (Kubernetes ${kube_version}); the first build takes a while"
  (cd "$here/kube" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}")
fi
for k in kwok kwokctl; do
  if [[ " ${missing[*]} " == *" $k "* ]]; then
    log "building $k ${kwok_version}"
    GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-trimpath go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/$k@${kwok_version}"
  fi
done
if [[ " ${missing[*]} " == *" istio-crds.yaml "* ]]; then
  log "fetching the official Istio CRDs from istio.io/api ${istio_api_version}"
  dir=$(cd "$tmp" && go mod download -json "istio.io/api@${istio_api_version}" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  cp "$dir/kubernetes/customresourcedefinitions.gen.yaml" "$tmp/istio-crds.yaml"
fi
mv "$tmp"/* "$out"/
log "binaries in $out"
echo "$out"
