"""The request-level sampling field names: one definition for SamplingParams, the server, the CLI and the client."""

from __future__ import annotations

# The request-level sampling fields, by the names SamplingParams, the server's requests and the CLI share.
# The OpenAI API's own fields, then the extensions vLLM also takes (sent as extra_body by an OpenAI client).
# logprobs and thinking_budget are not here: each interface derives them its own way (top_logprobs, budget).
OPENAI_SAMPLING_FIELDS = ("max_tokens", "temperature", "top_p", "presence_penalty", "frequency_penalty", "seed", "stop")
EXTRA_SAMPLING_FIELDS = ("top_k", "min_p", "repetition_penalty", "stop_token_ids", "ignore_eos", "skip_special_tokens")
SAMPLING_FIELDS = OPENAI_SAMPLING_FIELDS + EXTRA_SAMPLING_FIELDS


def sampling_fields(source) -> dict:
    """The request-level sampling fields `source` (a request model, parsed CLI arguments) has, by name."""
    return {name: getattr(source, name) for name in SAMPLING_FIELDS if hasattr(source, name)}


def check_sampling_names(options: dict) -> None:
    """TypeError for a sampling option that is not a request-level field (a caller's typo, not user input)."""
    unknown = set(options) - set(SAMPLING_FIELDS)
    if unknown:
        raise TypeError(f"unknown sampling options: {sorted(unknown)}")
