#!/usr/bin/env bash
# End-to-end on kind, for machines with a Docker engine: three kind clusters (mgmt, even,
# odd), the official Istio CRDs, the chart, and the canonical release. Route 53 is moto in
# a container. The health checks need a Prometheus with Istio metrics: PROMETHEUS_URL.
# kind nodes run no real pods of the image registry.example.com/document-service, so
# sprint 41/42 run as whatever image you set in the example (e.g. a pause image).
set -euo pipefail
cd "$(dirname "$0")/../.."
docker info >/dev/null 2>&1 || { echo "kind-e2e: no Docker engine; nothing to do" >&2; exit 3; }
command -v kind >/dev/null || { echo "kind-e2e: install kind (sigs.k8s.io/kind)" >&2; exit 3; }
helm=$(bash hack/testenv/tools.sh helm)
istio=$(bash hack/testenv/build.sh istio-crds.yaml)/istio-crds.yaml
for c in mgmt even odd; do
  kind get clusters | grep -qx "sprintops-$c" || kind create cluster --name "sprintops-$c" --wait 120s
done
docker build -t sprintops:e2e .
kind load docker-image sprintops:e2e --name sprintops-mgmt
docker run -d --rm --name sprintops-moto --network kind -p 5000:5000 motoserver/moto:latest >/dev/null || true
for c in even odd; do
  kubectl --context "kind-sprintops-$c" apply --server-side -f "$istio"
  kubectl --context "kind-sprintops-$c" create namespace documents --dry-run=client -o yaml | kubectl --context "kind-sprintops-$c" apply -f -
done
kubectl --context kind-sprintops-mgmt create namespace releases --dry-run=client -o yaml | kubectl --context kind-sprintops-mgmt apply -f -
for c in even odd; do
  kind get kubeconfig --internal --name "sprintops-$c" > "/tmp/sprintops-$c.kubeconfig"
  kubectl --context kind-sprintops-mgmt -n releases create secret generic "cluster-$c" \
    --from-file=kubeconfig="/tmp/sprintops-$c.kubeconfig" --dry-run=client -o yaml | kubectl --context kind-sprintops-mgmt apply -f -
done
"$helm" upgrade --install sprintops charts/sprintops --kube-context kind-sprintops-mgmt \
  --namespace sprintops-system --create-namespace \
  --set image.repository=sprintops --set image.tag=e2e --set image.pullPolicy=Never \
  --set aws.existingSecret=sprintops-aws --set "prometheus.url=${PROMETHEUS_URL:?set PROMETHEUS_URL}"
kubectl --context kind-sprintops-mgmt -n sprintops-system create secret generic sprintops-aws \
  --from-literal=AWS_ACCESS_KEY_ID=testing --from-literal=AWS_SECRET_ACCESS_KEY=testing \
  --from-literal=AWS_ENDPOINT_URL_ROUTE_53=http://sprintops-moto:5000 --dry-run=client -o yaml \
  | kubectl --context kind-sprintops-mgmt apply -f -
# The seeded baseline, from the same code as the local environment: zone and records
# (odd=100), VirtualServices in both clusters, sprint 41 Available in odd.
AWS_ENDPOINT_URL_ROUTE_53=http://127.0.0.1:5000 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
AWS_DEFAULT_REGION=us-east-1 .venv/bin/python - <<'PY'
from pathlib import Path
from kubernetes import config
from sprintops_dev import seed
spec = seed.canonical(Path("."))
apis = {c: config.new_client_from_config(context=f"kind-sprintops-{c}") for c in ("even", "odd")}
seed.service_baseline(apis, spec, "odd")
PY
kubectl --context kind-sprintops-mgmt apply -f examples/sprintrelease.yaml
PATH="$PWD/.venv/bin:$PATH" kubectl sprint --context kind-sprintops-mgmt -n releases watch document-service-sprint-42 --timeout 600
