"""Read a bash command line the way bash would, far enough to name every simple command it runs.

`simple_commands("(cd x && sudo rm -fr /) | tee log")` gives the words of `cd x`, `sudo rm -fr /` and
`tee log`, with quotes removed, redirections dropped, and the commands inside `$(...)`, backticks,
`<(...)` and here-documents included. It never runs or expands anything: a word whose value only bash
can know (`$X`, `$(cmd)`, `{a,b}`) is marked `dynamic`. Anything this reader does not understand
(`case`, function definitions, unbalanced quotes or parentheses, a stray operator) raises
`Unparseable`, so callers can refuse what they cannot check instead of guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_DEPTH = 16  # nested substitutions; deeper is refused, not recursed into


class Unparseable(ValueError):
    """The command line uses syntax this reader does not follow."""


@dataclass
class Word:
    text: str  # after quote removal; expansions stay as written
    dynamic: bool = False  # holds an expansion: its runtime value is unknown here
    glob: bool = False  # holds an unquoted * ? or [: bash may replace it by file names
    quoted: bool = False  # had quotes or backslashes (a quoted here-document delimiter keeps its body literal)


# Reserved words that may start a command line: `if rm x; then ...` runs rm. They are words to this reader;
# callers strip them from the front of a command (see leading_keywords).
KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}"}
SEPARATORS = (";", "&", "&&", "||", "|", "|&")
REDIRECTS = ("<<<", "<<-", "&>>", "<<", ">>", "<&", ">&", "&>", ">|", "<>", "<", ">")
CONTROL = ("&&", "||", "|&", ";;&", ";;", ";&", ";", "&", "|", "(", ")")
META = set(" \t\n;&|()<>")
BRACE_EXPANSION = re.compile(r"\{[^{}]*(,|\.\.)[^{}]*\}")
VARIABLE = re.compile(r"\$([A-Za-z_]\w*|[0-9@*#?$!-])")
FD_PREFIX = re.compile(r"\d+|\{[A-Za-z_]\w*\}")
ANSI_ESCAPES = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}


def simple_commands(command: str) -> list[list[Word]]:
    """The words of every simple command in `command`, outer ones first, nested ones after."""
    return _Reader(command, depth=0).script()


class _Reader:
    def __init__(self, src: str, depth: int):
        if depth > MAX_DEPTH:
            raise Unparseable("substitutions nested too deeply")
        self.src, self.i, self.depth = src, 0, depth
        self.found: list[list[Word]] = []  # simple commands in order of completion
        self.heredocs: list[tuple[str, bool, bool]] = []  # (delimiter, quoted, strip tabs) awaiting a newline

    # -- the command grammar: lists, pipelines, subshells, redirections -----------------------------

    def script(self, closer: str | None = None) -> list[list[Word]]:
        """Read commands up to the end, or up to an unmatched `closer` (")" of a `$(`)."""
        current: list[Word] = []
        depth = 0  # open subshell parentheses
        need_command = False  # after | && ||: a command must follow
        after_group = False  # just closed a subshell: a separator may follow an empty command
        while True:
            self._blanks()
            if self.i >= len(self.src):
                if closer or depth or need_command or self.heredocs:
                    raise Unparseable("the command line ends too early")
                break
            c = self.src[self.i]
            if c == "\n":
                self.i += 1
                self._end(current)
                current = []
                self._read_heredocs()
                after_group = False
                continue
            if c == ")" and closer == ")" and depth == 0:
                self.i += 1
                if need_command:
                    raise Unparseable("a command is missing before ')'")
                break
            op = self._control()
            if op is None:
                redirect = self._redirect()
                if redirect is None:
                    word = self._word()
                    if not word.quoted and FD_PREFIX.fullmatch(word.text) and self.src[self.i:self.i + 1] in ("<", ">"):
                        continue  # "2>" or "{fd}>": a file descriptor, not an argument
                    if after_group:
                        raise Unparseable(f"a word after ')': {word.text!r}")
                    current.append(word)
                    need_command = False
                else:
                    self._blanks()
                    target = self._word() if self.i < len(self.src) and self.src[self.i] not in META else None
                    if target is None:
                        raise Unparseable(f"'{redirect}' has no target")
                    if redirect in ("<<", "<<-"):
                        self.heredocs.append((target.text, target.quoted, redirect == "<<-"))
                continue
            if op == "(":
                if any(w.quoted or w.text not in KEYWORDS for w in current):
                    raise Unparseable("'(' after a command word (a function definition?)")
                current, depth = [], depth + 1  # "if (" or "! (": the keywords run nothing themselves
                continue
            if op == ")":
                if depth == 0 or need_command or (not current and not after_group):
                    raise Unparseable("unbalanced ')'")
                depth -= 1
                self._end(current)
                current, after_group = [], True
                continue
            if op not in SEPARATORS:
                raise Unparseable(f"'{op}' (case patterns) is not supported")
            if not current and not after_group:
                raise Unparseable(f"'{op}' without a command before it")
            self._end(current)
            current, after_group = [], False
            need_command = op in ("&&", "||", "|", "|&")
        self._end(current)
        return self.found

    def _end(self, words: list[Word]) -> None:
        if words:
            self.found.append(words)

    def _blanks(self) -> None:
        """Skip spaces, tabs, line continuations and comments (a '#' that starts a word)."""
        while self.i < len(self.src):
            c = self.src[self.i]
            if c in " \t":
                self.i += 1
            elif self.src.startswith("\\\n", self.i):
                self.i += 2
            elif c == "#":
                end = self.src.find("\n", self.i)
                self.i = len(self.src) if end < 0 else end
            else:
                return

    def _control(self) -> str | None:
        if self.src.startswith(("<(", ">("), self.i):
            return None  # process substitution: a word
        for op in CONTROL:
            if self.src.startswith(op, self.i) and not self.src.startswith(("&>", "&>>"), self.i):
                self.i += len(op)
                return op
        return None

    def _redirect(self) -> str | None:
        if self.src.startswith(("<(", ">("), self.i):
            return None
        for op in REDIRECTS:
            if self.src.startswith(op, self.i):
                self.i += len(op)
                return op
        return None

    def _read_heredocs(self) -> None:
        """Consume the bodies of the here-documents opened on the line just ended."""
        pending, self.heredocs = self.heredocs, []
        for delimiter, quoted, strip_tabs in pending:
            body = []
            while True:
                if self.i >= len(self.src):
                    raise Unparseable(f"here-document without its '{delimiter}' line")
                end = self.src.find("\n", self.i)
                end = len(self.src) if end < 0 else end
                line = self.src[self.i:end]
                self.i = end + 1
                if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                    break
                body.append(line)
            if not quoted:  # an unquoted delimiter: $(...) and `...` in the body run
                inner = _Reader("\n".join(body), self.depth)
                inner._double_quoted(terminator=None)
                self.found.extend(inner.found)

    # -- words: quoting and expansions ------------------------------------------------------------

    def _word(self) -> Word:
        start = self.i
        text, unquoted = [], []  # unquoted: the parts bash would glob- and brace-expand
        dynamic = glob = quoted = False
        if self.src.startswith(("<(", ">("), self.i):
            self.i += 2
            self._nested_until_paren()
            return Word(self.src[start:self.i], dynamic=True)
        while self.i < len(self.src) and self.src[self.i] not in META:
            c = self.src[self.i]
            quoted |= c in "\\'\""
            if c == "\\":
                if self.i + 1 >= len(self.src):
                    raise Unparseable("a trailing backslash")
                if self.src[self.i + 1] != "\n":
                    text.append(self.src[self.i + 1])
                self.i += 2
            elif c == "'":
                end = self.src.find("'", self.i + 1)
                if end < 0:
                    raise Unparseable("an unclosed single quote")
                text.append(self.src[self.i + 1:end])
                self.i = end + 1
            elif c == '"':
                self.i += 1
                part, dyn = self._double_quoted('"')
                text.append(part)
                dynamic |= dyn
            elif c == "$" and self.src.startswith("$'", self.i):
                text.append(self._ansi_c())
            elif c == "$" and self.src.startswith('$"', self.i):
                self.i += 2
                part, dyn = self._double_quoted('"')
                text.append(part)
                dynamic |= dyn
            elif c in "$`":
                part, dyn = self._expansion()
                text.append(part)
                dynamic |= dyn
            else:
                glob |= c in "*?["
                text.append(c)
                unquoted.append(c)
                self.i += 1
        dynamic |= bool(BRACE_EXPANSION.search("".join(unquoted)))
        return Word("".join(text), dynamic=dynamic, glob=glob, quoted=quoted)

    def _double_quoted(self, terminator: str | None) -> tuple[str, bool]:
        """Read up to `terminator` (None: the end); $ and ` still expand, backslash escapes only $`"\\."""
        text, dynamic = [], False
        while True:
            if self.i >= len(self.src):
                if terminator is None:
                    return "".join(text), dynamic
                raise Unparseable("an unclosed double quote")
            c = self.src[self.i]
            if c == terminator:
                self.i += 1
                return "".join(text), dynamic
            if c == "\\" and self.src[self.i + 1:self.i + 2] in ("$", "`", '"', "\\", "\n"):
                if self.src[self.i + 1] != "\n":
                    text.append(self.src[self.i + 1])
                self.i += 2
            elif c in "$`":
                part, dyn = self._expansion()
                text.append(part)
                dynamic |= dyn
            else:
                text.append(c)
                self.i += 1

    def _expansion(self) -> tuple[str, bool]:
        """At a '$' or '`': read one expansion, collecting the commands it would run."""
        start = self.i
        if self.src[self.i] == "`":
            self._backticks()
        elif self.src.startswith("$((", self.i):
            self.i += 3
            self._arithmetic()
        elif self.src.startswith("$(", self.i):
            self.i += 2
            self._nested_until_paren()
        elif self.src.startswith("${", self.i):
            self.i += 2
            self._parameter()
        elif variable := VARIABLE.match(self.src, self.i):
            self.i = variable.end()
        else:
            self.i += 1
            return "$", False  # a lone dollar sign is literal
        return self.src[start:self.i], True

    def _nested_until_paren(self) -> None:
        inner = _Reader(self.src, self.depth + 1)
        inner.i = self.i
        inner.script(closer=")")
        self.i = inner.i
        self.found.extend(inner.found)

    def _backticks(self) -> None:
        body, self.i = [], self.i + 1
        while True:
            if self.i >= len(self.src):
                raise Unparseable("an unclosed backquote")
            c = self.src[self.i]
            if c == "`":
                self.i += 1
                break
            if c == "\\" and self.src[self.i + 1:self.i + 2] in ("$", "`", "\\"):
                body.append(self.src[self.i + 1])
                self.i += 2
            else:
                body.append(c)
                self.i += 1
        self.found.extend(_Reader("".join(body), self.depth + 1).script())

    def _arithmetic(self) -> None:
        """$(( ... )): skip to the matching '))'; substitutions inside still run."""
        start, depth = self.i, 0
        while self.i < len(self.src):
            c = self.src[self.i]
            if c in "$`":
                self._expansion()
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    if not self.src.startswith("))", self.i):
                        raise Unparseable("an unclosed $((")
                    self.i += 2
                    return
                depth -= 1
            self.i += 1
        raise Unparseable(f"an unclosed $(( at {start}")

    def _parameter(self) -> None:
        """${...}: skip to the matching '}', reading quotes and substitutions (${x:-$(cmd)} runs cmd)."""
        while self.i < len(self.src):
            c = self.src[self.i]
            if c == "}":
                self.i += 1
                return
            if c == "\\":
                self.i += 2
            elif c == "'":
                end = self.src.find("'", self.i + 1)
                if end < 0:
                    raise Unparseable("an unclosed single quote")
                self.i = end + 1
            elif c == '"':
                self.i += 1
                self._double_quoted('"')
            elif c in "$`":
                self._expansion()
            else:
                self.i += 1
        raise Unparseable("an unclosed ${")

    def _ansi_c(self) -> str:
        """$'...' with its backslash escapes decoded ($'\\x72m' is rm)."""
        self.i += 2
        out = []
        while True:
            if self.i >= len(self.src):
                raise Unparseable("an unclosed $'")
            c = self.src[self.i]
            if c == "'":
                self.i += 1
                return "".join(out)
            if c != "\\":
                out.append(c)
                self.i += 1
                continue
            esc = self.src[self.i + 1:self.i + 2]
            number = re.match(r"x[0-9a-fA-F]{1,2}|u[0-9a-fA-F]{1,4}|U[0-9a-fA-F]{1,8}|[0-7]{1,3}",
                              self.src[self.i + 1:])
            if number:
                digits = number.group(0)
                code = int(digits, 8) if digits[0] in "01234567" else int(digits[1:], 16)
                if code > 0x10FFFF:
                    raise Unparseable("an escape beyond Unicode in $'...'")
                out.append(chr(code))
                self.i += 1 + len(digits)
            elif esc == "c" and self.i + 2 < len(self.src):
                out.append(chr(ord(self.src[self.i + 2]) & 0x1F))
                self.i += 3
            elif esc in ANSI_ESCAPES:
                out.append(ANSI_ESCAPES[esc])
                self.i += 2
            else:
                out.append("\\" + esc)
                self.i += 2
