"""Deny rules matched on what a command runs, not on how it is spelled.

A rule such as `rm -rf` names a program, options and operands. A command matches when any command it
would run (every simple command of a pipeline, list or subshell, the contents of `$(...)`, and what a
wrapper such as `sudo`, `env`, `xargs`, `find -exec`, `eval` or `bash -c` starts) has the same program
basename, at least the rule's options in any order or grouping (`-rf` == `-fr` == `-r -f` ==
`--recursive --force`), and the rule's operands in order. An argument whose value only bash knows
(`$X`, `$(...)`) could be anything, so it matches too. Commands that cannot be read raise Unparseable.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass

from qcoder.agent.shell_syntax import KEYWORDS, Unparseable, Word, simple_commands

# Long options and their usual one-letter spellings, so `--force` and `-f` are the same rule.
LONG_ALIASES = {"force": "f", "recursive": "r"}
CAPITAL_R_IS_RECURSIVE = {"rm", "cp", "chmod", "chown", "chgrp", "scp", "rsync"}
ASSIGNMENT = re.compile(r"[A-Za-z_]\w*(\[[^]]*\])?\+?=")
SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"}


@dataclass(frozen=True)
class Wrapper:
    """A program that runs the command in its arguments: which options take a value, what precedes the command."""
    value_short: str = ""  # one-letter options followed by a value (`-u root`)
    value_long: frozenset = frozenset()
    operands_before: int = 0  # `timeout 5 cmd`: non-option words before the command


WRAPPERS = {
    "sudo": Wrapper("ugpUrtCDhRT", frozenset({"user", "group", "prompt", "role", "type", "close-from", "chdir",
                                               "chroot", "command-timeout", "other-user", "host"})),
    "doas": Wrapper("uC"),
    "env": Wrapper("uCS", frozenset({"unset", "chdir", "split-string"})),
    "command": Wrapper(), "builtin": Wrapper(), "exec": Wrapper("a"), "nohup": Wrapper(), "setsid": Wrapper(),
    "time": Wrapper("fo", frozenset({"format", "output"})),
    "nice": Wrapper("n", frozenset({"adjustment"})),
    "ionice": Wrapper("cnp", frozenset({"class", "classdata", "pid"})),
    "timeout": Wrapper("sk", frozenset({"signal", "kill-after"}), operands_before=1),
    "stdbuf": Wrapper("ioe", frozenset({"input", "output", "error"})),
    "xargs": Wrapper("adEeIiLlnPs", frozenset({"arg-file", "delimiter", "eof", "replace", "max-lines", "max-args",
                                                "max-procs", "max-chars", "process-slot-var"})),
    "chroot": Wrapper(operands_before=1),
    "taskset": Wrapper(operands_before=1),
}


@dataclass(frozen=True)
class Invocation:
    """One command as a rule sees it: program basename, normalised options, operands in order."""
    program: str
    short: frozenset
    long: frozenset
    operands: tuple
    dynamic: bool  # an argument holds an expansion

    @classmethod
    def of(cls, words: list[Word]) -> Invocation:
        program = os.path.basename(words[0].text)
        short, long, operands = set(), set(), []
        options_done = False
        for word in words[1:]:
            text = word.text
            if options_done or text == "-" or not text.startswith("-"):
                operands.append(word)
            elif text == "--":
                options_done = True
            elif text.startswith("--"):
                name = text[2:].split("=", 1)[0]
                (short.add(LONG_ALIASES[name]) if name in LONG_ALIASES else long.add(name))
            else:
                letters = text[1:]
                if program in CAPITAL_R_IS_RECURSIVE:
                    letters = letters.replace("R", "r")
                short.update(letters)
        return cls(program, frozenset(short), frozenset(long), tuple(operands), any(w.dynamic for w in words[1:]))

    def covers(self, other: Invocation) -> bool:
        """Does this rule match the command `other`?"""
        if self.program != other.program:
            return False
        if other.dynamic:
            return True  # `rm $FLAGS /` might be `rm -rf /`
        return self.short <= other.short and self.long <= other.long and _in_order(self.operands, other.operands)


def _in_order(wanted: tuple, have: tuple) -> bool:
    it = iter(have)
    return all(any(_same_operand(w, h) for h in it) for w in wanted)


def _same_operand(rule: Word, word: Word) -> bool:
    # A glob on either side matches what it would expand to: deny `rm -rf /` also stops `rm -rf /*`.
    return (rule.text == word.text or (rule.glob and fnmatch.fnmatchcase(word.text, rule.text))
            or (word.glob and fnmatch.fnmatchcase(rule.text, word.text)))


def parse_rule(rule: str) -> Invocation:
    """A deny rule: exactly one plain simple command (`rm -rf`, `git push --force`)."""
    try:
        commands = simple_commands(rule)
    except Unparseable as exc:
        raise ValueError(f"deny rule {rule!r} is not a simple command: {exc}") from None
    if len(commands) != 1 or any(w.dynamic for w in commands[0]):
        raise ValueError(f"deny rule {rule!r} must be one simple command without expansions, such as 'rm -rf'")
    return Invocation.of(commands[0])


def invocations(command: str) -> list[Invocation]:
    """Everything `command` would run, wrappers and what they wrap. Raises Unparseable."""
    out: list[Invocation] = []
    for words in simple_commands(command):
        _collect(words, out, depth=0)
    return out


def _collect(words: list[Word], out: list[Invocation], depth: int) -> None:
    if depth > 8:
        raise Unparseable("wrappers nested too deeply")
    words = _strip_prefix(words)
    if not words:
        return
    program = words[0]
    if program.dynamic or program.glob:
        raise Unparseable(f"the program name {program.text!r} is only known when bash expands it")
    out.append(Invocation.of(words))
    name = os.path.basename(program.text)
    for inner in _wrapped(name, words[1:]):
        _collect(inner, out, depth + 1)


def _strip_prefix(words: list[Word]) -> list[Word]:
    """Drop leading reserved words (`if`, `then`, `!`, ...) and variable assignments (`A=1 cmd`)."""
    i = 0
    while i < len(words) and ((words[i].text in KEYWORDS and not words[i].quoted)
                              or ASSIGNMENT.match(words[i].text)):
        i += 1
    return words[i:]


def _wrapped(name: str, args: list[Word]) -> list[list[Word]]:
    """The commands a wrapper program runs from its arguments (none for ordinary programs)."""
    if name in WRAPPERS:
        return _after_options(name, args)
    if name in SHELLS or name == "su":
        return _shell_script(name, args)
    if name in ("eval", "watch"):
        if name == "watch":
            args = _skip_options(args, Wrapper("nd", frozenset({"interval", "differences"})))
        return _script(args)
    if name == "find":
        return _find_exec(args)
    return []


def _skip_options(args: list[Word], spec: Wrapper) -> list[Word]:
    """The arguments after a wrapper's own options (and their values)."""
    i = 0
    while i < len(args) and args[i].text.startswith("-") and args[i].text != "-":
        text = args[i].text
        i += 1
        if text == "--":
            break
        if text.startswith("--"):
            i += "=" not in text and text[2:] in spec.value_long
            continue
        for n, letter in enumerate(text[1:], 1):
            if letter in spec.value_short:
                i += n == len(text) - 1  # "-Eu root" takes the next word; "-uroot" carries its value
                break
    return args[i:]


def _after_options(name: str, args: list[Word]) -> list[list[Word]]:
    spec = WRAPPERS[name]
    if name == "env":
        split = _env_split_string(args)
        if split is not None:
            return [split]
        rest = _skip_options(args, spec)
        while rest and ASSIGNMENT.match(rest[0].text):
            rest = rest[1:]
    else:
        rest = _skip_options(args, spec)
    rest = rest[spec.operands_before:]
    if name == "xargs" and rest:
        rest = [*rest, Word("<input>", dynamic=True)]  # xargs appends what it reads
    return [rest] if rest else []


def _env_split_string(args: list[Word]) -> list[Word] | None:
    """`env -S 'rm -rf /'` splits its string into the command."""
    for i, arg in enumerate(args):
        text = arg.text
        value = None
        if text in ("-S", "--split-string") and i + 1 < len(args):
            value, rest = args[i + 1], args[i + 2:]
        elif text.startswith("-S") and len(text) > 2:
            value, rest = Word(text[2:], arg.dynamic), args[i + 1:]
        elif text.startswith("--split-string="):
            value, rest = Word(text.split("=", 1)[1], arg.dynamic), args[i + 1:]
        if value is not None:
            if value.dynamic:
                raise Unparseable("env -S with an expansion")
            commands = simple_commands(value.text)
            if len(commands) != 1:
                raise Unparseable("env -S with more than one command")
            return _skip_assignments(commands[0]) + rest
        if not text.startswith("-"):
            return None
    return None


def _skip_assignments(words: list[Word]) -> list[Word]:
    i = 0
    while i < len(words) and ASSIGNMENT.match(words[i].text):
        i += 1
    return words[i:]


def _shell_script(name: str, args: list[Word]) -> list[list[Word]]:
    """`bash -c SCRIPT`, `sh -ec SCRIPT`, `su -c SCRIPT user`: the script's commands. A shell reading
    its standard input runs commands nobody can see here."""
    if name == "busybox":
        return [args] if args and not args[0].text.startswith("-") else []
    c_flag, i = False, 0
    while i < len(args):
        text = args[i].text
        if text == "--" or text == "-":
            i += 1
            break
        if text in ("-c", "--command") and name == "su":
            return _script(args[i + 1:i + 2])
        if not text.startswith(("-", "+")):
            break
        i += 1
        if text.startswith("--"):
            i += text in ("--rcfile", "--init-file") and name != "su"
        elif text[1:] in ("o", "O") and name != "su":
            i += 1  # "-o pipefail"
        elif name != "su":
            c_flag |= "c" in text[1:]
            if "s" in text[1:] and not c_flag:
                raise Unparseable(f"{name} -s reads its commands from standard input")
    if c_flag:
        return _script(args[i:i + 1])
    if name == "su":
        return []  # an interactive login shell
    if i >= len(args):
        raise Unparseable(f"{name} reads its commands from standard input")
    return []  # a script file: its text is not part of this command


def _script(args: list[Word]) -> list[list[Word]]:
    if not args:
        return []
    if any(a.dynamic for a in args):
        raise Unparseable("a script built from expansions")
    return simple_commands(" ".join(a.text for a in args))


def _find_exec(args: list[Word]) -> list[list[Word]]:
    out, i = [], 0
    while i < len(args):
        if args[i].text in ("-exec", "-execdir", "-ok", "-okdir"):
            end = i + 1
            while end < len(args) and args[end].text not in (";", "+"):
                end += 1
            if end > i + 1:  # "{}" becomes each file name found
                out.append([Word(a.text, dynamic=True) if "{}" in a.text else a for a in args[i + 1:end]])
            i = end
        i += 1
    return out
