#!/bin/sh
# The container's entry point: `qcoder` with the container's environment applied.
#
#   (no arguments)          -> qcoder serve --host 0.0.0.0 (the image's CMD)
#   serve [ARGS...]         -> qcoder serve [flags from QCODER_* variables] [ARGS...]
#   pull [ARGS...]          -> qcoder pull [ARGS...] [$QCODER_MODEL when ARGS name no model]
#   anything else           -> qcoder ...
#
# Flags from the environment come first, so flags on the command line win (argparse keeps the last one).
# The API key is read from $QCODER_API_KEY, or from the file named by $QCODER_API_KEY_FILE (a mounted
# Secret). It is handed to qcoder in the environment, never on the command line where `ps` would show it.
set -eu

fail() {
    echo "qcoder-entrypoint: error: $*" >&2
    exit 2
}

load_api_key() {
    if [ -z "${QCODER_API_KEY_FILE:-}" ]; then
        return 0
    fi
    if [ -n "${QCODER_API_KEY:-}" ]; then
        fail "set QCODER_API_KEY or QCODER_API_KEY_FILE, not both"
    fi
    [ -f "$QCODER_API_KEY_FILE" ] || fail "QCODER_API_KEY_FILE: no such file: $QCODER_API_KEY_FILE"
    [ -r "$QCODER_API_KEY_FILE" ] || fail "QCODER_API_KEY_FILE: cannot read $QCODER_API_KEY_FILE"
    # The first line, without a trailing CR (files written on Windows) or surrounding blanks.
    key=$(head -n 1 "$QCODER_API_KEY_FILE" | tr -d '\r' | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
    [ -n "$key" ] || fail "QCODER_API_KEY_FILE: $QCODER_API_KEY_FILE is empty"
    QCODER_API_KEY=$key
    export QCODER_API_KEY
    unset QCODER_API_KEY_FILE key
}

# Appends `--flag value` to the serve flags when the variable is set and not empty.
serve_flags=""
add_flag() {
    flag=$1
    value=$2
    if [ -n "$value" ]; then
        case "$value" in
            *[!A-Za-z0-9._:/@+=-]*) fail "$flag: unexpected characters in value '$value'" ;;
        esac
        serve_flags="$serve_flags $flag $value"
    fi
}

if [ "$#" -eq 0 ]; then
    set -- serve --host 0.0.0.0
fi

case "$1" in
    serve)
        shift
        load_api_key
        add_flag --model "${QCODER_MODEL:-}"
        add_flag --served-model-name "${QCODER_SERVED_MODEL_NAME:-}"
        add_flag --port "${QCODER_PORT:-}"
        add_flag --max-num-seqs "${QCODER_MAX_NUM_SEQS:-}"
        add_flag --max-waiting "${QCODER_MAX_WAITING:-}"
        add_flag --max-model-len "${QCODER_MAX_MODEL_LEN:-}"
        add_flag --tool-call-parser "${QCODER_TOOL_CALL_PARSER:-}"
        add_flag --dtype "${QCODER_DTYPE:-}"
        add_flag --quant "${QCODER_QUANT:-}"
        add_flag --threads "${QCODER_THREADS:-}"
        # Word splitting of $serve_flags is intended: add_flag allowed no blanks or glob characters in values.
        # shellcheck disable=SC2086
        exec qcoder serve $serve_flags "$@"
        ;;
    pull)
        shift
        # `pull [--quiet]` without a model name pulls $QCODER_MODEL (the init step of a deployment).
        for arg in "$@"; do
            case "$arg" in
                -*) ;;
                *) exec qcoder pull "$@" ;;
            esac
        done
        if [ -n "${QCODER_MODEL:-}" ]; then
            exec qcoder pull "$@" "$QCODER_MODEL"
        fi
        exec qcoder pull "$@"
        ;;
    *)
        exec qcoder "$@"
        ;;
esac
