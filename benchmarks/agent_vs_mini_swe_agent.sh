#!/usr/bin/env bash
# The agent suite solved by qcoder and by mini-swe-agent (PyPI), same model, same tasks, one table each.
#
#   benchmarks/agent_vs_mini_swe_agent.sh MODEL [extra `qcoder eval agent` options, e.g. --tasks a,b --timeout 600]
#   (the tasks are benchmarks/agent_tasks unless the options give another --dir)
#
# mini-swe-agent drives the model through `qcoder serve` (its litellm client speaks the OpenAI API with tool
# calls); qcoder runs its own agent in-process on the same GGUF. Set MINI to the `mini` executable when it is
# not on PATH (it pins its own dependencies, so a separate virtual environment is the easy way:
# `python -m venv ~/mswe && ~/mswe/bin/pip install mini-swe-agent`).
#
# MINI_CONFIG=mini_textbased.yaml runs mini's text-based mode (one ```bash block per reply, no tool calls), the one
# its docs suggest for models without reliable tool calling. QCODER=0 skips the qcoder half (when an
# `eval agent` run of the same tasks, model and --timeout is already at hand).
set -euo pipefail
MODEL=${1:?usage: $0 MODEL [qcoder eval agent options]}
shift
MINI=${MINI:-$(command -v mini || true)}
MINI_CONFIG=${MINI_CONFIG:-mini.yaml}
case "$MINI_CONFIG" in *textbased*) MODEL_CLASS="--model-class litellm_textbased" ;; *) MODEL_CLASS="" ;; esac
[ -x "$MINI" ] || { echo "mini-swe-agent's 'mini' not found: pip install mini-swe-agent, or set MINI=" >&2; exit 2; }
PY=${PY:-python}
PORT=${PORT:-8011}
OUT=${OUT:-runs/agent-vs-mini-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

"$PY" -m qcoder serve --model "$MODEL" --port "$PORT" > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break
    kill -0 $SERVER 2>/dev/null || { echo "qcoder serve exited; see $OUT/serve.log" >&2; exit 1; }
    sleep 1
done

# mini non-interactive, with its own config (MINI_CONFIG); cost tracking off (a local model has no price list);
# the step limit keeps a lost run from looping until the timeout.
MINI_CMD="env MSWEA_CONFIGURED=true MSWEA_COST_TRACKING=ignore_errors OPENAI_API_KEY=local $MINI -y --exit-immediately \
 $MODEL_CLASS -m openai/$MODEL -c $MINI_CONFIG -c model.model_kwargs.api_base=http://127.0.0.1:$PORT/v1 -c agent.step_limit=30 \
 -c agent.cost_limit=0 -o {workspace}/../mini.traj.json -t {task}"
"$PY" -m qcoder eval agent --dir benchmarks/agent_tasks --agent-cmd "$MINI_CMD" \
    --output "$OUT/mini-swe-agent-${MINI_CONFIG%.yaml}" --allow-errors "$@"
kill $SERVER; wait $SERVER 2>/dev/null || true; trap - EXIT

[ "${QCODER:-1}" = 0 ] || "$PY" -m qcoder eval agent --dir benchmarks/agent_tasks --model "$MODEL" --output "$OUT/qcoder" \
    --allow-errors "$@"
echo "tables above; results in $OUT/*/summary.json"
