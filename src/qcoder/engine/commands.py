"""CLI: `qcoder generate` (one prompt, printed or streamed) and `qcoder chat` (a terminal REPL).

Sampling options left unset take the checkpoint's generation_config (Qwen's recommended settings for GGUF files).
"""

from __future__ import annotations

import argparse
import sys

from qcoder.errors import QcoderError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate text from a prompt",
        description="Run the model on one prompt and print the completion. With --chat the prompt is sent as a "
        "user message through the model's chat template (what an instruct model expects).",
        epilog="example: qcoder generate --chat -p 'Write a Python function that reverses a string' --stream",
    )
    _model_options(p)
    p.add_argument("-p", "--prompt", required=True, help="the prompt text ('-' reads it from stdin)")
    p.add_argument("--chat", action="store_true", help="apply the chat template to the prompt (a user turn)")
    p.add_argument("--system", help="system message (with --chat)")
    p.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    _sampling_options(p)
    p.set_defaults(func=_generate)

    p = subparsers.add_parser(
        "chat",
        help="chat with a model in the terminal",
        description="A small REPL: every line is a user message; the answer streams back and the conversation "
        "is kept. Commands: /clear forgets the conversation, /quit (or Ctrl-D) exits, Ctrl-C stops an answer.",
    )
    _model_options(p)
    p.add_argument("--system", help="system message for the conversation")
    _sampling_options(p)
    p.set_defaults(func=_chat)


def _model_options(p: argparse.ArgumentParser) -> None:
    from qcoder.model.registry import DEFAULT_MODEL

    p.add_argument(
        "-m",
        "--model",
        default=DEFAULT_MODEL,
        help=f"local HF directory or .gguf file, registry name or HF repo id (default: {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weight and KV-cache precision; auto is bfloat16 on a GPU, float32 on the CPU (default: auto)",
    )
    p.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cuda when available)")
    add_cpu_options(p)
    p.add_argument("--max-model-len", type=int, help="context window in tokens (default: the model's)")


def add_cpu_options(p: argparse.ArgumentParser, threads: bool = True, speculative: bool = True) -> None:
    """--quant, --threads and --speculative, shared by every command that runs a model in-process."""
    p.add_argument(
        "--quant",
        default="auto",
        choices=["auto", "none", "int8", "int4"],
        help="weight quantization on the CPU; auto computes straight from a GGUF file's quantized blocks (or "
        "int8/int4 kernels where it cannot), none dequantizes to --dtype (default: auto)",
    )
    if threads:
        p.add_argument("--threads", type=int, help="CPU threads for the kernels (default: the physical cores)")
    if speculative:
        add_speculative_option(p)


def add_speculative_option(p) -> None:
    """--speculative (an ArgumentParser or an argument group): the engine's speculative decoding mode."""
    from qcoder.engine.speculative import DEFAULT_MODE, SPECULATIVE_MODES

    p.add_argument(
        "--speculative",
        choices=SPECULATIVE_MODES,
        default=DEFAULT_MODE,
        help="speculative decoding: ngram drafts tokens from the prompt and output (fast when code is written "
        f"back with small changes; output unchanged), none turns it off (default: {DEFAULT_MODE})",
    )


def _sampling_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling (unset: the checkpoint's generation_config)")
    g.add_argument("--max-tokens", type=int, default=512, help="most tokens to generate (default: 512)")
    g.add_argument("--temperature", type=float, help="0 = greedy")
    g.add_argument("--top-p", type=float, help="nucleus sampling: keep the smallest set of tokens with this mass")
    g.add_argument("--top-k", type=int, help="0 = off")
    g.add_argument("--min-p", type=float, help="drop tokens below this fraction of the top probability")
    g.add_argument("--repetition-penalty", type=float, help="> 1 discourages tokens already in the text")
    g.add_argument("--presence-penalty", type=float, help="-2..2, subtracted once from generated tokens")
    g.add_argument("--frequency-penalty", type=float, help="-2..2, subtracted per occurrence")
    g.add_argument("--seed", type=int, help="makes sampling reproducible")
    g.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop at this text (repeatable)")
    g.add_argument("--thinking-budget", type=int, metavar="N", help="close <think> after N thinking tokens")


def _load(args):
    from qcoder.engine.llm import LLM

    if sys.stderr.isatty():  # loading takes a while; say so, but keep redirected stderr clean
        print(f"qcoder: loading {args.model} ...", file=sys.stderr, flush=True)
    return LLM(args.model, dtype=args.dtype, device=args.device, quant=args.quant, threads=args.threads, max_model_len=args.max_model_len,
               speculative=args.speculative)


def _params(llm, args):
    from qcoder.engine.sampling import sampling_fields

    return llm.engine.default_params(**sampling_fields(args), thinking_budget=args.thinking_budget)


def _generate(args) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    llm = _load(args)
    params = _params(llm, args)
    if args.chat:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": prompt}
        ]
        ids = llm.chat_prompt_ids(messages)
    else:
        ids = llm.tokenizer.encode(prompt)
    if args.stream:
        for piece in llm.stream(ids, params):
            print(piece, end="", flush=True)
        print()
    else:
        print(llm.generate([ids], params)[0].text)
    return 0


def _chat(args) -> int:
    from qcoder.engine.reasoning import split_reasoning

    llm = _load(args)
    params = _params(llm, args)
    start = [{"role": "system", "content": args.system}] if args.system else []
    history = list(start)
    print(f"qcoder chat with {args.model}. /clear forgets the conversation, /quit exits.", file=sys.stderr)
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            print()
            return 0
        command = line.strip()
        if not command:
            continue
        if command in ("/quit", "/exit"):
            return 0
        if command == "/clear":
            history = list(start)
            print("(conversation cleared)")
            continue
        history.append({"role": "user", "content": line})
        try:
            ids = llm.chat_prompt_ids(history)
            llm.engine.check_prompt(ids)
        except QcoderError as e:
            history.pop()
            print(f"qcoder: {e} (use /clear to start over)", file=sys.stderr)
            continue
        text = ""
        try:
            for piece in llm.stream(ids, params):
                print(piece, end="", flush=True)
                text += piece
        except KeyboardInterrupt:
            print(" (stopped)", end="")
        print()
        _, content = split_reasoning(text, starts_in_thinking=llm.engine.opens_thinking(ids))
        history.append({"role": "assistant", "content": content})
