"""Messages (+ tools) -> prompt text, by the checkpoint's own Jinja chat template.

Templates come with downloaded checkpoints, so they are untrusted code: they run in Jinja's immutable sandbox
with the same options and helpers transformers gives them (trim_blocks, lstrip_blocks, loop controls,
`raise_exception`, a `tojson` that does not HTML-escape, `strftime_now`), so the text is identical to
`tokenizer.apply_chat_template(..., tokenize=False)`.

Before rendering, OpenAI-style requests are brought to the shape HF templates expect: content parts become one
string, tool-call arguments sent as JSON text become dicts, and a tool without `parameters` gets an empty schema.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from importlib import resources

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from qcoder.errors import QcoderError

# Names a message's reasoning arrives under; templates read `reasoning_content` (Qwen3) or `thinking`.
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")

# Content part types that carry text (`input_text` is the Responses API's name); others are not supported.
TEXT_PART_TYPES = ("text", "input_text")

# Used when a checkpoint ships no template (e.g. a bare GGUF): the official Qwen3-Coder one, see templates/NOTICE.
DEFAULT_TEMPLATE_FILE = "qwen3_coder.jinja"


class ChatTemplate:
    """A compiled chat template. `render` is safe to call from several threads."""

    def __init__(self, template: str, bos_token: str | None = None, eos_token: str | None = None):
        self.source = template
        self._special_tokens = {k: v for k, v in (("bos_token", bos_token), ("eos_token", eos_token)) if v is not None}
        try:
            self._template = _environment().from_string(template)
        except jinja2.TemplateError as e:
            raise QcoderError(f"invalid chat template: {_one_line(e)}") from e

    @classmethod
    def for_tokenizer(cls, tokenizer) -> ChatTemplate:
        """The tokenizer's own template, or the shipped Qwen3-Coder one when it has none."""
        template = tokenizer.chat_template or default_template()
        return cls(template, bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token)

    def render(
        self,
        messages: list,
        tools: list | None = None,
        add_generation_prompt: bool = True,
        *,
        strict_arguments: bool = True,
        continue_final_message: bool = False,
        **kwargs,
    ) -> str:
        """The prompt text; extra kwargs (e.g. enable_thinking=False) are passed to the template as variables.

        strict_arguments: tool-call arguments that are not JSON are an error; else they are shown as written.
        continue_final_message: the prompt ends inside the last message, an assistant's, so that the reply goes on
        from its text (as in transformers and vLLM); no generation prompt then."""
        if not messages:
            raise QcoderError("cannot render an empty conversation: give at least one message")
        normalized = normalize_messages(messages, strict_arguments)
        final = None
        if continue_final_message:
            if normalized[-1].get("role") != "assistant" or not isinstance(normalized[-1].get("content"), str):
                raise QcoderError("continue_final_message needs an assistant message with text last")
            final = normalized[-1]["content"]
        variables = {**self._special_tokens, **kwargs}
        try:
            text = self._template.render(
                messages=normalized,
                tools=normalize_tools(tools) if tools else None,
                documents=None,
                add_generation_prompt=add_generation_prompt and final is None,
                **variables,
            )
        except (jinja2.TemplateError, TypeError, ValueError) as e:
            raise QcoderError(f"chat template error: {_one_line(e)}") from e
        if final is None:
            return text
        # Cut after the message's text: as written, or stripped where the template strips it.
        for shown in (final, final.strip()):
            if shown and shown in text:
                return text[: text.rindex(shown) + len(shown)]
        raise QcoderError("continue_final_message: the chat template does not show the final message's text")


def default_template() -> str:
    return resources.files("qcoder.engine").joinpath("templates", DEFAULT_TEMPLATE_FILE).read_text(encoding="utf-8")


def normalize_messages(messages: list, strict_arguments: bool = True) -> list[dict]:
    """OpenAI chat messages -> plain dicts in the shape HF chat templates read. The input is not modified."""
    normalized = []
    for index, message in enumerate(messages):
        if hasattr(message, "model_dump"):  # pydantic request models
            message = message.model_dump()
        if not isinstance(message, dict):
            raise QcoderError(f"message {index}: expected an object with 'role' and 'content', got {message!r}")
        # Drop None values as transformers does: templates test `is defined`, and would print None as text.
        message = {k: copy.deepcopy(v) for k, v in message.items() if v is not None}
        if message.get("role") == "developer":  # OpenAI's newer name for system; templates know only system
            message["role"] = "system"
        if isinstance(message.get("content"), list):
            message["content"] = _join_content_parts(message["content"], index)
        for call in message.get("tool_calls") or []:
            function = call.get("function", call)
            if isinstance(function.get("arguments"), str):
                function["arguments"] = _parse_arguments(function["arguments"], function.get("name"), index,
                                                         strict_arguments)
        reasoning = next((message[k] for k in REASONING_FIELDS if k in message), None)
        if reasoning is not None:  # filled under every name templates read, as transformers does
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        normalized.append(message)
    return normalized


def normalize_tools(tools: list | None) -> list[dict] | None:
    """OpenAI tool definitions, with an empty parameter schema for a tool that declares none."""
    if tools is None:
        return None
    normalized = []
    for tool in tools:
        tool = copy.deepcopy(tool.model_dump(exclude_none=True) if hasattr(tool, "model_dump") else tool)
        function = tool.get("function", tool)
        if function.get("parameters") is None:
            function["parameters"] = {"type": "object", "properties": {}}
        normalized.append(tool)
    return normalized


def _join_content_parts(parts: list, index: int) -> str:
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") in TEXT_PART_TYPES:
            texts.append(part.get("text") or "")
        else:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise QcoderError(f"message {index}: content part of type {kind!r} is not supported (text only)")
    return "\n".join(texts)


def _parse_arguments(arguments: str, name, index: int, strict: bool):
    if not arguments.strip():
        return {}
    try:
        return json.loads(arguments)
    except json.JSONDecodeError as e:
        if not strict:
            return arguments  # the template prints the text as is
        raise QcoderError(f"message {index}: arguments of tool call {name!r} are not valid JSON ({e})") from e


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


# ----- the environment transformers renders templates in -----


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    return env


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    # Jinja's own tojson HTML-escapes '<', '>' and '&', which would change what the model sees.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message):
    raise jinja2.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _TemplateDict:
    """`dict(...)` for templates, without exposing the dict type itself (and its attributes) to the sandbox."""

    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """Jinja's `namespace()`, refusing underscore names so a template cannot plant attributes like `__class__`."""

    def __init__(*args, **kwargs):  # the same signature trick as jinja2.utils.Namespace
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _check_namespace_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _check_namespace_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)


def _check_namespace_name(name) -> None:
    if isinstance(name, str) and name.startswith("_"):
        raise jinja2.exceptions.SecurityError(f"chat templates may not set underscore attributes ({name!r})")


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks assistant text for training masks; rendering ignores it."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller):
        return caller()
