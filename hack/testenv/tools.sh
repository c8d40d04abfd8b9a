#!/usr/bin/env bash
# Builds a pinned Go tool once into the cache outside the repo and prints its path.
# Usage: tools.sh helm
set -euo pipefail
cache=${SPRINTOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sprintops}
case ${1:?usage: tools.sh helm} in
  helm) module=helm.sh/helm/v3/cmd/helm version=v3.19.0 ;;
  *) echo "unknown tool: $1" >&2; exit 2 ;;
esac
out="$cache/bin/$1-$version"
if [ ! -x "$out/$1" ]; then
  echo "[tools] building $1 $version with Go (once)" >&2
  mkdir -p "$out"
  tmp=$(mktemp -d "$out/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-trimpath go install -ldflags "-s -w" "$module@$version"
  mv "$tmp/$1" "$out/$1"
fi
echo "$out/$1"
