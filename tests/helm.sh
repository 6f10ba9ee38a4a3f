#!/usr/bin/env bash
# The Helm chart helm/rentabot in CI (README § Kubernetes (Helm)), on a machine with no
# helm binary and no cluster:
#
# 1. lint (strict, Kubernetes 1.30) and render it with the defaults and with each
#    tests/helm/values-*.yaml, through the Helm library of PyPI's helm-python-sdk
#    (tests/helm/render.py; values.schema.json is enforced);
# 2. validate every rendered manifest with `kubernetes-validate --strict -k 1.30.0`.
#    ServiceMonitor and PrometheusRule (monitoring.coreos.com/v1) are custom resources
#    whose schemas it does not bundle: they are skipped here, said so, and their shape
#    is checked by tests/api/chart.rs and tests/api/observability.rs. values-ha.yaml
#    is the active/standby pair on PostgreSQL (a Deployment of two, a
#    PodDisruptionBudget): rendered and validated here, not run (no database here);
# 3. run the pod the chart renders with tests/helm/values-podman.yaml under `podman
#    kube play` (tests/helm/kube_play.py: the StatefulSet as its pod, the claim as a
#    podman volume, a hostPort on 127.0.0.1), from the image $RENTABOT_IMAGE
#    (localhost/rentabot:ci) that tests/image.sh builds (run here when the image is
#    missing): it must answer /health and /readiness, run as uid 65532 on a read-only
#    root, refuse a lock without the API key of the chart's Secret and grant one with
#    it, and still hold that lock after the pod is replaced (the state is on the
#    claim). Torn down at exit, whatever happened.
#
# Needs RENTABOT_HELM_PYTHON: a Python with helm-python-sdk==0.2.2, kubernetes-validate
# and PyYAML (.ci/run makes it); podman, runc and catatonit (TOOLING.md § Containers;
# kube play builds its pause image from catatonit); curl, jq.
# RENTABOT_HELM_SKIP_PODMAN=1 stops after step 2.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${RENTABOT_HELM_PYTHON:?RENTABOT_HELM_PYTHON must name a Python with helm-python-sdk (see .ci/run)}
validate="$(dirname "$python")/kubernetes-validate"
out=target/helm
rm -rf "$out"
mkdir -p "$out"

for values in defaults tests/helm/values-*.yaml; do
    name=$(basename "$values" .yaml)
    echo "== helm lint --strict, render, kubernetes-validate --strict -k 1.30.0: $name"
    if [ "$values" = defaults ]; then
        "$python" tests/helm/render.py helm/rentabot "$out/$name"
    else
        "$python" tests/helm/render.py helm/rentabot "$out/$name" "$values"
    fi
    "$validate" --strict -k 1.30.0 --quiet "$out/$name/manifests.yaml"
done

if [ "${RENTABOT_HELM_SKIP_PODMAN:-}" = 1 ]; then
    echo "== podman kube play: skipped (RENTABOT_HELM_SKIP_PODMAN=1)"
    exit 0
fi

echo "== podman kube play: the rendered pod"
# TOOLING.md § Containers: runc (crun fails here) and limits the sandbox permits.
if [ -z "${CONTAINERS_CONF:-}" ]; then
    cat > "$out/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
    export CONTAINERS_CONF="$PWD/$out/containers.conf"
fi
# The image tests/image.sh leaves (RENTABOT_IMAGE, as there; repository:tag), built
# by it when missing.
image=${RENTABOT_IMAGE:-localhost/rentabot:ci}
if ! podman image exists "$image"; then
    echo "   $image is missing: tests/image.sh builds it"
    tests/image.sh
fi
printf 'image:\n  repository: %s\n  tag: %s\n' "${image%:*}" "${image##*:}" > "$out/image.yaml"
"$python" tests/helm/render.py helm/rentabot "$out/podman" tests/helm/values-podman.yaml "$out/image.yaml"
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$python" tests/helm/kube_play.py "$out/podman/manifests.yaml" "$port" > "$out/play.yaml"
"$python" tests/helm/kube_play.py "$out/podman/manifests.yaml" "$port" --claims-exist > "$out/replay.yaml"
pod=demo-rentabot-0
container=$pod-rentabot
# The claim's volume, and those podman makes of the ConfigMaps (kube down keeps them).
volumes=("data-$pod" demo-rentabot-descriptor demo-rentabot-auth)
cleanup() {
    podman kube down "$out/play.yaml" > /dev/null 2>&1 || true
    podman volume rm -f "${volumes[@]}" > /dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

base=http://127.0.0.1:$port
key=$(sed -n 's/^ *key: "\(.*\)"$/\1/p' tests/helm/values-podman.yaml)
api() { curl -sS --fail-with-body --max-time 10 -H "X-API-Key: $key" "$@"; }
# Bounded: the pod has 60 s to answer, asked once a second (curl's own retries).
await_ready() {
    curl -s --fail --max-time 5 --retry 60 --retry-delay 1 --retry-max-time 60 \
        --retry-connrefused --retry-all-errors "$base/readiness" > /dev/null \
        || { podman logs "$container" >&2 || true; echo "the pod never got ready" >&2; exit 1; }
}

podman kube play "$out/play.yaml" > /dev/null
await_ready
test "$(curl -sS --max-time 5 "$base/health" | jq -r .status)" = ok \
    || { echo "/health does not say ok" >&2; exit 1; }
user=$(podman top "$container" huser | tail -n 1 | tr -d ' ')
readonly_root=$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$container")
echo "   ready on $base; runs as uid $user, read-only root: $readonly_root"
[ "$user" = 65532 ] || { echo "the pod runs as $user, not 65532" >&2; exit 1; }
[ "$readonly_root" = true ] || { echo "the root filesystem is writable" >&2; exit 1; }
# The Secret's auth config is in force: no key, no lock.
status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -X POST "$base/api/v1/resources/lock?tag=board")
[ "$status" = 401 ] || { echo "a lock without a key got $status, not 401" >&2; exit 1; }
lock=$(api -X POST "$base/api/v1/resources/lock?tag=board" --json '{"ttl": 600}')
token=$(jq -r '."lock-token"' <<< "$lock")
id=$(jq -r '.resource.id' <<< "$lock")
echo "   locked resource $id (of the chart's descriptor) with the chart's API key"

echo "== podman kube play: the lock survives a new pod on the same claim"
podman kube down "$out/play.yaml" > /dev/null
podman kube play "$out/replay.yaml" > /dev/null
await_ready
held=$(api "$base/api/v1/resources/$id" | jq -r '.resource."lock-token"')
[ "$held" = "$token" ] || { echo "after the restart resource $id holds '$held', not the lock" >&2; exit 1; }
api -X POST -H "X-Lock-Token: $token" "$base/api/v1/resources/$id/unlock" > /dev/null
echo "   resource $id still locked by the same token, then unlocked"
