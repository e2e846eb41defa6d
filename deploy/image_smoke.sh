#!/usr/bin/env bash
# `make image-smoke`: build the CPU image, serve the default model from a volume, make one chat completion with the
# openai SDK, stop the container (it must drain and exit 0) and clean up. Needs root and podman.
#
# No image registry has to be reachable: when BASE_IMAGE is not already in podman's store, a Debian rootfs is made
# with debootstrap (from Debian's package mirror) and `podman import`ed. The model volume is seeded from the host's
# qcoder cache when the model is there, else filled by the image's own `pull` (the init step a cluster runs).
#
# Environment: PYTHON (has the openai SDK; default .venv/bin/python), MODEL, QCODER_HOST_CACHE, SMOKE_CACHE,
# REMOVE_IMAGE=1 removes the built image too (by default it stays as the next build's cache: a cold build installs
# torch and takes about 15 minutes on 2 cores, a warm one seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
MODEL=${MODEL:-qwen2.5-coder-0.5b-instruct}
BASE_IMAGE=${BASE_IMAGE:-localhost/qcoder-base:bookworm}
IMAGE=${IMAGE:-localhost/qcoder:smoke}
SMOKE_CACHE=${SMOKE_CACHE:-/var/tmp/qcoder-image-smoke}
HOST_CACHE=${QCODER_HOST_CACHE:-${QCODER_CACHE:-${QCODER_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/qcoder}}}
RUN_ID=qcoder-smoke-$$
# Podman from Debian's packages, run as root without systemd: runc and plain cgroupfs, and explicit ulimits
# (podman's defaults, and even this shell's process limit, can exceed what a nested container host lets runc set).
PODMAN=(podman --runtime runc --cgroup-manager=cgroupfs)
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
ULIMITS=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")

start=$(date +%s)
step() { printf '[image-smoke %4ss] %s\n' "$(($(date +%s) - start))" "$*"; }
die() { echo "image-smoke: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (podman with runc and cgroupfs)"
command -v podman >/dev/null || die "podman is not installed (apt-get install podman)"
"$PYTHON" -c "import openai" 2>/dev/null || die "$PYTHON has no openai SDK (make venv, or set PYTHON)"

workdir=$(mktemp -d)
copied_wheels=()
cleanup() {
    "${PODMAN[@]}" rm -f -t 5 "$RUN_ID" >/dev/null 2>&1 || true
    "${PODMAN[@]}" volume rm -f "$RUN_ID-models" >/dev/null 2>&1 || true
    if [ "${REMOVE_IMAGE:-0}" = 1 ]; then "${PODMAN[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true; fi
    for wheel in "${copied_wheels[@]}"; do rm -f "$wheel"; done
    rm -rf "$workdir"
}
trap cleanup EXIT

# 1. The base image.
if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
    command -v debootstrap >/dev/null || die "$BASE_IMAGE is missing and debootstrap is not installed"
    mkdir -p "$SMOKE_CACHE"
    if [ ! -f "$SMOKE_CACHE/bookworm.tar" ]; then
        step "debootstrap: a minimal Debian bookworm rootfs"
        rm -rf "$SMOKE_CACHE/rootfs"
        debootstrap --variant=minbase bookworm "$SMOKE_CACHE/rootfs" >"$SMOKE_CACHE/debootstrap.log" 2>&1 \
            || die "debootstrap failed, see $SMOKE_CACHE/debootstrap.log"
        tar -C "$SMOKE_CACHE/rootfs" -cf "$SMOKE_CACHE/bookworm.tar.tmp" . && mv "$SMOKE_CACHE/bookworm.tar.tmp" "$SMOKE_CACHE/bookworm.tar"
        rm -rf "$SMOKE_CACHE/rootfs"
    fi
    step "podman import $BASE_IMAGE"
    "${PODMAN[@]}" import --change 'CMD ["/bin/bash"]' "$SMOKE_CACHE/bookworm.tar" "$BASE_IMAGE" >/dev/null
fi

# 2. torch: the CPU wheel pip would pick on this machine (a local file here), offered to the build in deploy/wheels/.
torch_spec=$(grep -o "torch==[0-9.]*" Makefile | head -n 1)
if ! ls deploy/wheels/torch-* >/dev/null 2>&1; then
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: "$torch_spec" -d "$workdir/wheels" \
        || die "pip could not fetch $torch_spec"
    for wheel in "$workdir"/wheels/*.whl; do
        cp "$wheel" deploy/wheels/ && copied_wheels+=("deploy/wheels/$(basename "$wheel")")
    done
fi

# pip's CA bundle on this machine (a TLS-intercepting proxy's CA), for pip inside the build.
pip_cert=${PIP_CERT:-$("$PYTHON" -m pip config get global.cert 2>/dev/null || true)}
if [ -n "$pip_cert" ] && [ -f "$pip_cert" ] && [ ! -f deploy/wheels/ca-bundle.pem ]; then
    cp "$pip_cert" deploy/wheels/ca-bundle.pem && copied_wheels+=(deploy/wheels/ca-bundle.pem)
fi

# 3. The image.
step "podman build -f deploy/Containerfile -t $IMAGE"
"${PODMAN[@]}" build --format docker --network host "${ULIMITS[@]}" --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --build-arg TORCH_SPEC="$torch_spec" -f deploy/Containerfile -t "$IMAGE" . >"$workdir/build.log" 2>&1 \
    || { tail -n 40 "$workdir/build.log"; die "podman build failed"; }
step "image size: $("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}')"

# 4. The model volume: seeded from the host cache, else pulled by the image itself (the init step).
"${PODMAN[@]}" volume create "$RUN_ID-models" >/dev/null
if [ -d "$HOST_CACHE/models/$MODEL" ]; then
    step "seeding the model volume from $HOST_CACHE/models/$MODEL"
    "${PODMAN[@]}" run --rm --no-healthcheck "${ULIMITS[@]}" -v "$HOST_CACHE/models/$MODEL:/seed:ro" -v "$RUN_ID-models:/models" \
        --entrypoint /bin/sh "$IMAGE" -c "mkdir -p /models/models/$MODEL && cp /seed/*.gguf /models/models/$MODEL/"
else
    step "qcoder pull $MODEL into the model volume (init step)"
    "${PODMAN[@]}" run --rm --no-healthcheck "${ULIMITS[@]}" --network host -v "$RUN_ID-models:/models" -e QCODER_MODEL="$MODEL" \
        "$IMAGE" pull --quiet
fi

# 5. Serve, with the API key from a mounted file.
port=$("$PYTHON" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$key" >"$workdir/api-key"
chmod 0644 "$workdir/api-key"
step "podman run: serve $MODEL on 127.0.0.1:$port"
# Without systemd podman cannot schedule the HEALTHCHECK (it says so on stderr; filtered): it is run once by hand.
"${PODMAN[@]}" run -d --name "$RUN_ID" "${ULIMITS[@]}" --network host --read-only \
    -v "$RUN_ID-models:/models" -v "$workdir/api-key:/run/secrets/qcoder-api-key:ro" \
    -e QCODER_API_KEY_FILE=/run/secrets/qcoder-api-key -e QCODER_MODEL="$MODEL" -e QCODER_PORT="$port" \
    -e QCODER_MAX_MODEL_LEN=4096 "$IMAGE" 2> >(grep -v "systemd connection" >&2) >/dev/null

# 6. Wait for /health, then check the image's HEALTHCHECK, auth and one chat completion.
"$PYTHON" - "$port" "$key" "$MODEL" "$RUN_ID" <<'EOF'
import subprocess
import sys
import time

import httpx
import openai

port, key, model, container = sys.argv[1:]
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 600
while True:
    state = subprocess.run(["podman", "inspect", "--format", "{{.State.Status}}", container], capture_output=True, text=True)
    if state.stdout.strip() != "running":
        sys.exit(f"image-smoke: error: the container stopped ({state.stdout.strip()}) before /health answered")
    try:
        if httpx.get(f"{base}/health", timeout=2).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    if time.monotonic() > deadline:
        sys.exit("image-smoke: error: no /health within 600 s")
    time.sleep(1)
print(f"[image-smoke] /health answered after {time.monotonic() - deadline + 600:.1f} s")

check = subprocess.run(["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", "healthcheck", "run", container])
assert check.returncode == 0, "the image's HEALTHCHECK failed"
status = httpx.get(f"{base}/v1/models", timeout=10).status_code
assert status == 401, f"/v1/models without the key answered {status}, expected 401"

client = openai.OpenAI(base_url=f"{base}/v1", api_key=key)
reply = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Write a Python function that returns the square of x."}],
    max_tokens=48,
    temperature=0,
)
text = reply.choices[0].message.content
assert text and reply.usage.completion_tokens > 0, reply
print(f"[image-smoke] chat completion, {reply.usage.completion_tokens} tokens: {text[:120]!r}")
EOF

# 7. Stop: SIGTERM drains and the server exits 0.
step "podman stop"
"${PODMAN[@]}" stop -t 30 "$RUN_ID" 2> >(grep -v "systemd connection" >&2) >/dev/null
code=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$RUN_ID")
[ "$code" = 0 ] || { "${PODMAN[@]}" logs "$RUN_ID" | tail -n 20; die "the container exited with status $code"; }
step "passed (container exited 0); cleaning up"
[ "${REMOVE_IMAGE:-0}" = 1 ] || step "kept $IMAGE as the next build's cache (podman rmi $IMAGE frees it)"
