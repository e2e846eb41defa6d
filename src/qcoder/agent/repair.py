"""The test-verified repair path, tried before the general loop when the project's tests fail.

1. Run the tests (in a scratch copy). 2. Localize: traceback frames, missing names, functions the failing
tests call. 2b. Try the one-token fixes of the suspects (small_fixes.py): no model call, a test run each; one that
fixes some of the failing tests and breaks none is where the model starts (two bugs: one token fixes one), and so
is a flag the tests pass, declared on the parser that then accepts it.
3. Show the model the failing test, its error and the suspect code in full, and ask for the whole
function back (small models rewrite a function far more reliably than they copy an exact `old_string`).
4. Sample N candidates in one batched request. 5. Try each in a scratch copy, smallest diff first. 6. Keep
the first that makes the failing tests pass, breaks no passing test and leaves test files alone; write it.
When the tests give no lead or nothing passes, the general loop takes over with notes on what was tried.

The same verification serves the other rescue: a reply that carries code for a workspace file in a fenced
block is applied as an edit (when it breaks no passing test) instead of being taken as the final answer.
"""

from __future__ import annotations

import ast
import difflib
import re
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from qcoder.agent.fenced_edits import FENCE, assigned_name, proposed_files
from qcoder.agent.localize import Lead, Suspect, definition_node, first_line, frame_lines, localize, span, test_source
from qcoder.agent.loop import Submitted
from qcoder.agent.signature_change import signature_changes
from qcoder.agent.small_fixes import UNRECOGNIZED, evident_fixes, missing_options, renames, small_fixes
from qcoder.agent.testing import SUITE, Tester, TestReport, is_test_file
from qcoder.agent.tools.base import Tool

SYSTEM = ("You fix Python code so that its failing tests pass. Reply with code only: the complete corrected "
          "definitions in one ```python block.")
# Stands in for the edit permission when the agent has no write tool of its own.
WRITE = Tool("write_file", "write a file", {"type": "object", "properties": {}}, lambda **_: "", kind="edit")
RUN_TESTS = Tool("test", "run the tests", {"type": "object", "properties": {}}, lambda **_: "", kind="project")


@dataclass
class RepairSettings:
    """`[repair]` in the settings."""

    enabled: bool = True
    candidates: int = 6  # per round, sampled in one batched request
    rounds: int = 2  # at least (a second round may start over from the signature)
    temperature: float = 0.8
    forks: int = 3  # of a round's candidates, how many fork the greedy rewrite at its closest calls (client.forks)
    top_p: float = 0.95
    max_tokens: int = 768
    max_rounds: int = 12  # rounds past `rounds` run while the time limit allows, leaving `loop_share` of it
    # for the general loop: after a failed repair it solved 1 of about 65 suite runs, so rounds get the most (with
    # rounds of ~15 s, 12 instead of 6 solved 2 of the 5 tasks whose runs had used up 6, each in about 187 s)
    loop_share: float = 0.1
    small_fixes: int = 60  # one-token fixes tried before the model is asked (0: none); a third as many
    small_fix_seconds: float = 90.0  # and a third the time on each candidate that fixed some failing tests
    # A run that ends without success undoes its edits when they broke a test that passed or fixed none that failed:
    # unsolved runs of the 1.5B had left a renamed function, `class Money(Exception)` and the like behind (3 of 8
    # in one suite run, none of them making a test pass).
    undo_failed_edits: bool = True

    @classmethod
    def from_settings(cls, table: dict | None) -> RepairSettings:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in (table or {}).items() if k in known})


@dataclass
class Candidate:
    index: int
    files: dict[str, str]  # path -> proposed text
    code: str = ""  # the reply's code, for the next round's prompt
    added: int = 0
    removed: int = 0
    status: str = "untested"  # passed | failed | rejected | duplicate | untested
    reason: str = ""
    report: TestReport | None = None
    scaffold: bool = False  # a declared flag that no test passes with yet, but that the model builds on
    declared: str = ""  # the scaffold's declaration, for the prompt when the parser is not shown

    @property
    def size(self) -> int:
        return self.added + self.removed

    def event(self) -> dict:
        return {"index": self.index, "status": self.status, "reason": self.reason, "files": sorted(self.files),
                "added": self.added, "removed": self.removed,
                "tests": self.report.summary() if self.report else None, "code": self.code[:1500]}


@dataclass
class Repair:
    tester: Tester | None
    settings: RepairSettings = field(default_factory=RepairSettings)

    # -- before the loop ----------------------------------------------------------------------------------
    def attempt(self, agent, task: str) -> None:
        """Fix the failing tests with verified rewrites: raises Submitted when one is written, else returns
        (after leaving the loop a note of what was learnt)."""
        self.baseline = None
        if not (self.settings.enabled and self.tester) or agent.permissions.check(_tool(agent, "test", RUN_TESTS), {}):
            return
        baseline = self.baseline = self.tester.run()
        agent.emit("test_result", phase="before", **baseline.to_event())
        if baseline.ok or not baseline.failing:
            return
        files = self._files(agent)
        targets = _named_in(task, baseline.failing) or baseline.failing
        lead = localize(baseline, self.tester.workspace, files, targets) if self.tester.structured else None
        if lead is None or not lead.suspects:
            agent.add({"role": "user", "content": _notes(baseline, targets, lead, [])})
            return
        agent.emit("repair", phase="start", tests=targets[:10],
                   suspects=[f"{s.path}:{s.start} {s.name}" + (" (missing)" if s.missing else "") for s in lead.suspects],
                   candidates=self.settings.candidates)
        tried: list[Candidate] = []
        winner, partial = self._small_fix(agent, lead, baseline, targets)
        if winner is None and partial:  # one bug of two fixed by a token: the model is asked to finish it
            tried.append(partial)
            agent.emit("candidate", **partial.event())
        # A declared flag is where every round starts: the model is left with what the flag does.
        start = partial if winner is None and partial and partial.scaffold else None
        if start:
            rebased = _past_the_parser(_rebased(lead, start.files, start.report), lead)
            if len(rebased.suspects) < len(lead.suspects):
                start.code = _definitions(start.files, rebased.suspects)
                self._parsers = {s.name for s in lead.suspects} - {s.name for s in rebased.suspects}
            lead = rebased
        started, number, regular, refined, refining = time.monotonic(), 0, 0, set(), True
        while winner is None and self._another_round(agent, number, started):
            agent.check_limits()
            # A candidate that fixes some of the failing tests is worth a round of its own: shown with the test
            # it still fails, the model corrects it (hill-climbing) rather than starting over.
            close = next((c for c in _near_misses(tried, baseline) if c.index not in refined), None) if refining else None
            if close is not None:
                refined.add(close.index)
            fresh = self._round(agent, task, lead, baseline, targets, files, tried, regular, refine=close, base=start)
            regular += close is None
            # Half the corrections came back as the near miss itself: the model cannot see past it, and its
            # rounds are better spent on fresh samples (dedupe_emails: 12 of 12 unchanged, in two rounds).
            if close is not None and 2 * sum(c.status == "rejected" and "no change" in c.reason
                                             or c.files == close.files for c in fresh) >= len(fresh):
                refining = False
            winner = next((c for c in fresh if c.status == "passed"), None)
            # A candidate that fixes some of the failing tests may be one token from fixing them all.
            for near in [] if winner else _near_misses(fresh, baseline):
                winner, _ = self._small_fix(agent, lead, baseline, targets, base=near)
                if winner:
                    break
            number += 1
        agent.emit("repair", phase="done", fixed=winner is not None, chosen=winner.index if winner else None,
                   files=sorted(winner.files) if winner else [], tried=len(tried))
        if winner is None:
            agent.add({"role": "user", "content": _notes(baseline, targets, lead, tried, self._small_tried)})
            return
        diff = self._diff(winner.files)
        denied = self._write(agent, winner.files)
        if denied:
            agent.add({"role": "user", "content": f"A verified fix was found but not written: {denied}\n{diff}"})
            return
        agent.test_result = winner.report.to_event()
        agent.emit("test_result", phase="after", **agent.test_result)
        names = ", ".join(f"`{s.name}`" for s in lead.suspects if any(s.path == p for p in winner.files))
        answer = (f"Fixed {names or 'the code'} in {', '.join(sorted(winner.files))}: the failing tests pass now "
                  f"({winner.report.summary()}).\n\n{diff}")
        agent.add({"role": "assistant", "content": answer})
        raise Submitted("repaired: the failing tests pass", answer)

    # -- after the loop ------------------------------------------------------------------------------------
    def harm(self, agent) -> str | None:
        """Why the run's edits are worth less than nothing, by the tests as they are now: they broke a test that
        passed before the run, or fixed none of those that failed. None when they are worth keeping, or when there
        is nothing to compare with (no test run before, or a runner that reports only its exit status)."""
        before = self.baseline
        if not (before and before.outcomes and self.settings.undo_failed_edits):
            return None
        now = self.tester.run()
        agent.emit("test_result", phase="end", **now.to_event())
        broken = _broken(before, now)
        if now.timed_out or broken:
            return "made the tests time out" if now.timed_out else (
                f"broke {len(broken)} test(s) that passed before ({', '.join(t.split('::')[-1] for t in broken[:3])})")
        if before.failing and not (now.passed - before.passed):
            return f"made none of the {len(before.failing)} failing test(s) pass"
        return None

    def _small_fix(self, agent, lead, baseline, targets,
                   base: Candidate | None = None) -> tuple[Candidate | None, Candidate | None]:
        """The first one-token fix that passes, of the suspects as they are or (`base`) of a candidate that came
        close, tried two at a time within the time allowed; and, of the suspects as they are, the fix that made
        the most failing tests pass without passing them all (a near miss, as candidate 1)."""
        files = dict(base.files) if base else {}
        report = base.report if base else baseline
        focus: dict[str, set[int]] = {}
        for test in targets:
            for path, line in frame_lines(report.failures.get(test, "")):
                focus.setdefault(path, set()).add(line)
        fixes: list[tuple[dict[str, str], str]] = []  # (new file texts, what changed)
        options: list[tuple[dict[str, str], str]] = []  # a new flag declared: the tests get past argparse
        failures, tests = [report.failures.get(t, "") for t in targets], [lead.test_sources.get(t, "") for t in targets]
        # A test that needs a missing name fails until it exists: one-token changes of the code that is there never
        # passed one (0 of 22 suite and held-out runs; renames did), so only a rename is tried then.
        absent = not base and any(s.missing for s in lead.suspects)
        # a candidate's new definitions (of the missing names) first: they are the code least tested yet
        for suspect in sorted((s for s in lead.suspects if base or not s.missing and not absent),
                              key=lambda s: not s.missing):
            text = files.get(suspect.path) if base else self._read(suspect.path)
            lines = span(text or "", suspect.name) if base else (suspect.start, suspect.end)
            if text and lines:
                # what the compared values point at first: a few candidates, where the one-token kinds are many
                fixes[:0] = [({suspect.path: f.text}, f"{suspect.path} {f.description}")
                             for f in evident_fixes(text, *lines, failures)]
                fixes += [({suspect.path: f.text}, f"{suspect.path} {f.description}")
                          for f in small_fixes(text, *lines, tuple(focus.get(suspect.path, ())))]
                if not base:
                    options += [({suspect.path: f.text}, f"{suspect.path}: {f.description}")
                                for f in missing_options(text, *lines, failures, tests)]
        fixes[:0] = options
        for suspect in [] if base else (s for s in lead.suspects if s.missing and "." not in s.name):
            sources = self._sources()
            found = renames(suspect.name, suspect.path, sources)
            if found and found[1]:
                old, changed = found
                # then in strings too: an environment variable or a dict key named after a setting
                wide = renames(suspect.name, suspect.path, sources, strings=True)[1]
                fixes[:0] = [(changed, f"renamed `{old}` to `{suspect.name}` in {', '.join(changed)}")] + (
                    [(wide, f"renamed `{old}` to `{suspect.name}` in {', '.join(wide)}, strings included")]
                    if wide != changed else [])
        limit = self.settings.small_fixes // (3 if base else 1)  # a near miss gets a shorter search
        fixes = fixes[:limit]
        if not fixes:
            return None, None
        # A one-token change easily makes a loop endless: a shorter limit than a rewrite gets.
        timeout = min(self.tester.timeout, max(10.0, 5 * baseline.elapsed_s))
        began = time.monotonic()
        deadline = began + self.settings.small_fix_seconds / (3 if base else 1)
        workers, tried, winner, partial = 2, 0, None, None
        with ThreadPoolExecutor(workers) as pool:
            for at in range(0, len(fixes), workers):
                if time.monotonic() > deadline:
                    break
                agent.check_limits()
                batch = fixes[at:at + workers]
                reports = list(pool.map(lambda fix: self.tester.run({**files, **fix[0]}, timeout), batch))
                tried += len(batch)
                for (changed, description), run in zip(batch, reports, strict=True):
                    problem = _verdict(baseline, run, targets)
                    if problem is None:
                        what = description + (f" of candidate {base.index}" if base else "")
                        winner = Candidate(base.index if base else 0, {**files, **changed}, what,
                                           status="passed", reason=description, report=run)
                        break
                    if not base and (_progress(baseline, run) > _progress(baseline, partial and partial.report)
                                     or (changed, description) in options and partial is None
                                     and _gets_past_argparse(baseline, run, targets)):
                        partial = Candidate(1, dict(changed), _definitions(changed, lead.suspects), status="failed",
                                            reason=f"{description}: {problem}", report=run,
                                            scaffold=not _progress(baseline, run), declared=self._added(changed))
                        self._count(partial)
                if winner:
                    break
        self._small_tried += tried
        agent.emit("repair", phase="small_fixes", tried=tried, of=len(fixes), fixed=winner is not None,
                   fix=winner.code if winner else None, candidate=base.index if base else None,
                   seconds=round(time.monotonic() - began, 1))
        if winner:
            self._count(winner)
        return winner, partial

    def _another_round(self, agent, number: int, started: float) -> bool:
        """`rounds` rounds, then more (up to `max_rounds`) while the run's time limit leaves room for one more
        and for the general loop after it: more samples are the surest gain with a small model. Past the first,
        even the minimum runs only where the time left holds a round as long as the ones so far (a second round
        begun with 27 s left ran a 1.5B run 128 s past its limit)."""
        if number == 0:
            return True
        if not agent.limits.timeout:
            return number < self.settings.rounds
        if number >= self.settings.max_rounds:
            return False
        per_round = (time.monotonic() - started) / number
        left = agent.limits.timeout - (time.monotonic() - agent.started)
        if number < self.settings.rounds:
            return left > per_round
        return left - per_round > self.settings.loop_share * agent.limits.timeout

    def _round(self, agent, task, lead, baseline, targets, files, tried, number: int = 0,
               refine: Candidate | None = None, base: Candidate | None = None) -> list[Candidate]:
        """One batch of sampled rewrites, tested; `number` counts the regular rounds, `refine` asks instead for a
        correction of a candidate that came close; the rewrites apply to `base`'s files if given."""
        # After a round without a passing candidate, short functions are shown without their body: small models
        # tend to copy the bug back, and a fresh start from the signature, docstring and test often gets it right.
        # Later rounds alternate between the code as it is and the fresh start. A failed attempt is shown only when
        # it came close (`refine`): small models copy what they are shown (shown a failed attempt with "write a
        # different fix", the 1.5B sent back 6 copies of it).
        # (Two functions at most: from the signatures of more, small models rewrite the module and stub the rest.)
        fresh_start = len(lead.suspects) <= 2 and all(_skeleton(s.source) for s in lead.suspects) and number % 2 == 1
        prompt = (_refine_prompt(task, lead, refine, self._test_source, self._reached(refine)) if refine else
                  _prompt(task, lead, fresh_start, self._outlines(lead), self._constants(lead)))
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        size = sum(s.source.count("\n") + 1 for s in lead.suspects)
        limit = min(self.settings.max_tokens, 200 + 40 * size)
        # Stop at the block's closing fence: what small models add after it is explanation, slow to decode.
        # A round whose replies were (nearly) all the same gets a hotter second try: small models are confident. So
        # does a correction of a near miss, which the 1.5B otherwise mostly sends back unchanged (8 of 9 in one run).
        distinct = len({c.code for c in tried if c.status != "duplicate"})
        hotter = refine is not None or (tried and distinct <= 2)
        temperature = max(self.settings.temperature, 1.0) if hotter else self.settings.temperature
        prefix = _reply_prefix(lead.suspects, fresh_start and not refine, task)
        sampling_started = time.monotonic()
        # Decoding stops at the run's time limit, and what is finished by then is tested: a round of the 1.5B on a
        # slow CPU had taken 524 s of a 300 s limit.
        deadline = agent.started + agent.limits.timeout if agent.limits.timeout else None
        sampling = dict(prefix=prefix, temperature=temperature, top_p=self.settings.top_p, max_tokens=limit,
                        stop=self._stops(lead), deadline=deadline)
        replies = self._draw(agent.client, messages, **sampling)
        for reply in replies:
            for key in agent.tokens:
                agent.tokens[key] += reply.usage.get(key, 0)
        default = lead.suspects[0].path
        homes = {s.name: s.path for s in lead.suspects if s.missing and "." not in s.name}
        fresh = []
        for reply in replies:
            candidate = self._candidate(len(tried) + len(fresh) + 1, _heal(reply.content), files, default,
                                        tried + fresh, base=refine or base, homes=homes)
            fresh.append(candidate)
        tried += fresh
        testing_started = time.monotonic()
        timeout = min(self.tester.timeout, max(30.0, 10 * baseline.elapsed_s))
        winner = self._test(fresh, baseline, targets, timeout)
        if winner is None:
            # A reply that fixed the bug in one file and broke another (or edited a test) has a passing part; one
            # that wrote the new function of a signature change may need the old one's callers moved over to it
            parts = self._parts(fresh, tried)
            parts += self._signature_changes(fresh, tried + parts, task, homes)
            tried += parts
            fresh += parts
            self._test(parts, baseline, targets, timeout)
        for candidate in fresh:
            agent.emit("candidate", **candidate.event())
        # where a round's time goes: the batch's decoding, or the candidates' test runs
        agent.emit("repair", phase="round", refine=refine.index if refine else None, candidates=len(replies),
                   sampling_s=round(testing_started - sampling_started, 1),
                   testing_s=round(time.monotonic() - testing_started, 1))
        return fresh

    def _draw(self, client, messages, **sampling) -> list:
        """A round's replies: `forks` of them fork the greedy rewrite where the model hesitated (the prompt's next
        closest calls), the rest are sampled, both in one batch. Sampled, the code mostly came back as it was (in one
        run, 0-2 new candidates a round of 6); a fork is always a change, but one at a time, where some bugs need a
        rewrite (all forks lost two tasks that samples had solved, and solved two that samples had not)."""
        n = self.settings.candidates
        forks = min(n, self.settings.forks) if client.can_fork() else 0
        if not forks:  # one request of n: an endpoint that cannot fork samples them all
            return client.sample(messages, n, **sampling)
        key = messages[-1]["content"] + sampling["prefix"]
        start = self._forked.get(key, 0)
        self._forked[key] = start + forks
        with ThreadPoolExecutor(2) as pool:  # the samples decode beside the forks
            forked = pool.submit(client.forks, messages, forks, start=start, **sampling)
            sampled = client.sample(messages, n - forks, **sampling) if n > forks else []
            replies = forked.result() + sampled
        short = len(replies) < n and time.monotonic() < (sampling.get("deadline") or float("inf"))
        return replies + (client.sample(messages, n - len(replies), **sampling) if short else [])

    def _test(self, candidates, baseline, targets, timeout) -> Candidate | None:
        """Test the untested candidates, smallest first, up to the first that passes."""
        winner = None
        for candidate in sorted((c for c in candidates if c.status == "untested"), key=lambda c: (c.size, c.index)):
            if winner:
                candidate.reason = "a smaller passing fix was found"
                continue
            candidate.report = self.tester.run(candidate.files, timeout)
            problem = _verdict(baseline, candidate.report, targets)
            candidate.status, candidate.reason = ("failed", problem) if problem else ("passed", "")
            winner = None if problem else candidate
        return winner

    def _parts(self, fresh: list[Candidate], earlier: list[Candidate], most: int = 6) -> list[Candidate]:
        """Each file of a failed candidate that changed several, and the source files of one rejected for editing
        a test, as candidates of their own (upload_last_batch: a reply fixed `chunked` and broke the uploader)."""
        parts = []
        for candidate in fresh:
            if candidate.status == "failed" and len(candidate.files) > 1:
                subsets = [{path: text} for path, text in candidate.files.items()]
            elif candidate.status == "rejected" and candidate.reason.startswith("edits test file"):
                subsets = [{p: t for p, t in candidate.files.items() if not is_test_file(p)}]
            else:
                continue
            for files in subsets:
                if files and not any(c.files == files for c in earlier + parts) and len(parts) < most:
                    part = Candidate(len(earlier) + len(parts) + 1, files, candidate.code,
                                     reason=f"part of candidate {candidate.index}")
                    self._count(part)
                    parts.append(part)
        return parts

    def _stops(self, lead: Lead) -> list[str]:
        """A round's stop sequences (four at most: the OpenAI API's limit): the block's closing fence; a test function,
        which small models go on to copy from the prompt (75 of 2,403 candidates in earlier runs, none of which
        passed; 44 were rejected unseen as edits of a test file); definitions copied from the suspects' files."""
        stops = ["\n```\n"] + ([] if any(s.name.startswith("test_") for s in lead.suspects) else ["\ndef test_"])
        return stops + self._copied_definitions(lead, most=4 - len(stops))

    def _copied_definitions(self, lead: Lead, most: int) -> list[str]:
        """Stop sequences for the top-level definitions of the suspects' files that are not suspects, those after
        the first suspect first (where small models go on copying): of 244 such definitions in the replies of
        suite and held-out runs, none was in a passing candidate, and they made rounds 4-16% longer."""
        first = lead.suspects[0]
        wanted = {s.name.split(".")[0] for s in lead.suspects}
        found = []
        for path in dict.fromkeys(s.path for s in lead.suspects):
            text = self._read(path) or ""
            try:
                tree = ast.parse(text)
            except SyntaxError:
                continue
            lines = text.splitlines()
            nodes = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name not in wanted and not n.decorator_list]  # a decorator would be left dangling
            after = [n for n in nodes if path != first.path or n.lineno > first.start]
            for node in after + [n for n in nodes if n not in after]:
                header = re.match(rf"(?:async\s+)?(?:def|class)\s+{node.name}\W", lines[node.lineno - 1])
                if header:  # `def name(`, `class Name:`: the name as a whole
                    found.append("\n" + header.group(0))
        return found[:most]

    def _signature_changes(self, fresh: list[Candidate], earlier: list[Candidate], task: str, homes: dict[str, str],
                           most: int = 3) -> list[Candidate]:
        """Failed candidates that define a missing function (`homes`: name -> its file) beside one the task names
        (`rename duration(start, end) to shift_hours(shift)`), with every call of the named one made a call of the
        new one and the named one removed (signature_change.py)."""
        named = set(re.findall(r"\w+", task))
        workspace = self._sources()
        out = []
        for candidate in fresh:
            sources = {path: candidate.files.get(path) or text for path, text in workspace.items()}
            for new, home in homes.items() if candidate.status == "failed" else ():
                for old, changed in signature_changes(sources, home, new, named):
                    files = {**candidate.files, **changed}
                    if len(out) < most and not any(c.files == files for c in earlier + out):
                        out.append(Candidate(len(earlier) + len(out) + 1, files, candidate.code,
                                             reason=f"candidate {candidate.index} with `{old}`'s calls made "
                                                    f"calls of `{new}`"))
                        self._count(out[-1])
        return out

    def _candidate(self, index, reply, files, default, earlier, base: Candidate | None = None,
                   homes: dict[str, str] | None = None) -> Candidate:
        """A reply as files to test; with `base`, the reply corrects that candidate's files; `homes`: the file
        each missing name goes to."""
        read = lambda path: base.files[path] if base and path in base.files else self._read(path)  # noqa: E731
        if reply.count("```") % 2:  # cut at the stop sequence, or at max_tokens: close the block
            reply = reply.rstrip() + "\n```\n"
        proposed = proposed_files(reply, files, read, default, homes)
        proposed = {**base.files, **proposed} if base and proposed else proposed
        code = (FENCE.search(reply).group(2) if FENCE.search(reply) else reply).strip()
        candidate = Candidate(index, proposed, code)
        tests = sorted(p for p in proposed if is_test_file(p))
        if not proposed and (problem := _syntax_error(code)):
            candidate.status, candidate.reason = "rejected", f"the code does not parse: {problem}"
        elif not proposed and re.search(r"^\s*(async\s+)?def\s|^\s*class\s", code, re.M):
            candidate.status, candidate.reason = "rejected", "no change (the code came back as it was)"
        elif not proposed:
            candidate.status, candidate.reason = "rejected", "no usable code for a workspace file"
        elif tests:
            candidate.status, candidate.reason = "rejected", f"edits test file {tests[0]}"
        else:
            same = next((c for c in earlier if c.files == proposed), None)
            if same:
                candidate.status, candidate.reason = "duplicate", f"same as candidate {same.index}"
        self._count(candidate)
        return candidate

    def _changed_lines(self, files: dict[str, str]):
        """The diff lines (`+...` and `-...`, no headers) of `files` against the workspace."""
        for path, text in files.items():
            for line in difflib.unified_diff((self._read(path) or "").splitlines(), text.splitlines(), lineterm="",
                                             n=0):
                if line[:1] in ("+", "-") and not line.startswith(("+++", "---")):
                    yield line

    def _added(self, files: dict[str, str]) -> str:
        """The lines `files` add to the workspace."""
        return "\n".join(line[1:].strip() for line in self._changed_lines(files) if line.startswith("+"))

    def _count(self, candidate: Candidate) -> None:
        """The candidate's lines added and removed, against the workspace."""
        for line in self._changed_lines(candidate.files):
            if line.startswith("+"):
                candidate.added += 1
            else:
                candidate.removed += 1

    # -- a reply with code in it ---------------------------------------------------------------------------
    def proposes_code(self, agent, content: str) -> bool:
        """Whether a reply carries fenced code for workspace files that take_code_reply has not seen yet."""
        return "```" in content and self._unseen_proposal(agent, content) is not None

    def _unseen_proposal(self, agent, content: str) -> dict[str, str] | None:
        """path -> proposed text, for the code a reply carries, unless it carries none or the same was seen before."""
        files = proposed_files(content, self._files(agent), self._read)
        return files if files and tuple(sorted(files.items())) not in self._seen else None

    def take_code_reply(self, agent, content: str) -> bool:
        """A final answer that carries code for workspace files: apply it as an edit when it breaks no passing
        test. True when the loop should go on (the model reads what happened); Submitted when the tests pass."""
        if "```" not in content and not re.match(r"\s*(def |class )", content):
            return False
        files = self._unseen_proposal(agent, content)
        if files is None:
            return False
        self._seen.add(tuple(sorted(files.items())))
        if self.tester and not agent.permissions.check(_tool(agent, "test", RUN_TESTS), {}):
            before, after = self.tester.run(), self.tester.run(files)
            broken = sorted(before.passed - after.passed)
            if broken:
                agent.emit("code_edit", files=sorted(files), applied=False, reason=f"breaks {broken[0]}")
                agent.add({"role": "user", "content": (
                    f"Your code for {', '.join(sorted(files))} was not applied: it breaks {', '.join(broken[:3])} "
                    f"({after.error_line(broken[0])}). Fix the code with `edit` and run the tests.")})
                return True
        else:
            after = None
        diff = self._diff(files)
        denied = self._write(agent, files)
        agent.emit("code_edit", files=sorted(files), applied=not denied, reason=denied or "", diff=diff)
        if denied:
            return False
        if after is None:
            return False  # nothing to verify with: the loop's finish takes the answer
        agent.test_result = after.to_event()
        agent.emit("test_result", phase="after", **agent.test_result)
        if after.ok:
            raise Submitted("applied the code from the reply; the tests pass", content)
        failing = after.failing[0]
        agent.add({"role": "user", "content": (
            f"Your code was applied to {', '.join(sorted(files))}:\n{diff}\nThe tests still fail ({after.summary()}): "
            f"{failing}: {after.error_line(failing)}\nFix the code with `edit` and run the tests.")})
        return True

    # -- helpers ------------------------------------------------------------------------------------------
    def __post_init__(self):
        self.baseline: TestReport | None = None  # the tests before this run
        self._seen: set = set()
        self._small_tried = 0
        self._forked: dict[str, int] = {}  # prompt -> the forks of its greedy rewrite taken so far
        self._parsers: set[str] = set()  # left out once the new option is declared (_past_the_parser)
        self._python_files: list[str] = []
        self._root: Path | None = None

    def _outlines(self, lead: Lead) -> dict[str, str]:
        """path -> the outline of its other definitions, for each file with a suspect shown as a definition (a
        missing name's file is shown whole)."""
        paths = dict.fromkeys(s.path for s in lead.suspects if not s.missing)
        # a class shown whole is left out, but not one shown by its methods alone: its fields are what they use
        skip = {s.name.split(".")[0] for s in lead.suspects if "." not in s.name or s.missing}
        outlines = {path: outline for path in paths if (outline := _outline(self._read(path) or "", skip))}
        return {**outlines, **self._imported(lead, skip)}

    def _imported(self, lead: Lead, skip: set[str]) -> dict[str, str]:
        """path -> the outline of what the suspects use from that workspace module: the parameter names of a
        callee in another file are often the fix (`fee(minutes, hourly_rate)`, called with seconds)."""
        code = "\n".join(s.source for s in lead.suspects if not s.missing)
        used = set(re.findall(r"\b[A-Za-z_]\w*\b", code))
        shown = dict.fromkeys(s.path for s in lead.suspects if not s.missing)  # in order: the prompt is stable
        names: dict[str, set[str]] = {}
        for path in shown:
            try:
                tree = ast.parse(self._read(path) or "")
            except (SyntaxError, ValueError):
                continue
            for node in tree.body:
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    home = _module_file(node.module, self._python_files)
                    found = {a.name for a in node.names if (a.asname or a.name) in used}
                elif isinstance(node, ast.Import):  # `import rates` ... `rates.fee(...)`
                    home = None
                    for alias in node.names:
                        if (home := _module_file(alias.name, self._python_files)):
                            found = set(re.findall(rf"\b{re.escape(alias.asname or alias.name)}\.(\w+)", code))
                            break
                else:
                    continue
                if home and home not in shown and found - skip:
                    names.setdefault(home, set()).update(found - skip)
        return {path: outline for path, wanted in names.items()
                if (outline := _outline(self._read(path) or "", skip, only=wanted))}

    def _constants(self, lead: Lead) -> dict[str, str]:
        """suspect name -> the short module-level values it reads (each shown once, with its first reader), as
        code to change with it: a new unit needs its `SYMBOLS` entry, and a guess at the dict gets it wrong."""
        out, shown = {}, set()
        for suspect in lead.suspects:
            if suspect.missing:
                continue
            text = self._read(suspect.path) or ""
            try:
                tree = ast.parse(text)
            except (SyntaxError, ValueError):
                continue
            used = set(re.findall(r"\b[A-Za-z_]\w*\b", suspect.source))
            found = [n for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.end_lineno - n.lineno < 3
                     and assigned_name(n) in used and (suspect.path, assigned_name(n)) not in shown]
            shown |= {(suspect.path, assigned_name(n)) for n in found}
            lines = text.splitlines()
            if found:
                out[suspect.name] = "\n".join(line for n in found for line in lines[n.lineno - 1:n.end_lineno])
        return out

    def _reached(self, near: Candidate, most: int = 2, max_lines: int = 60) -> list[Suspect]:
        """The code the tests a near miss still fails point at, where its own code does not define it: the next
        step of a fix across functions (Money carries its currency now; Ledger.add must reject another one)."""
        if self._root is None or near.report is None or not near.report.failing:
            return []
        try:
            shown = {n.name for n in ast.walk(ast.parse(textwrap.dedent(near.code))) if isinstance(n, (
                ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        except SyntaxError:
            shown = set()
        found = localize(near.report, self._root, self._python_files, near.report.failing[:2], near.files).suspects
        out = []
        for suspect in found:
            overlaps = any(s.path == suspect.path and s.start <= suspect.end and suspect.start <= s.end for s in out)
            if (suspect.missing or overlaps or suspect.name in self._parsers or suspect.name.split(".")[-1] in shown
                    or suspect.name.split(".")[0] in shown
                    or sum(s.source.count("\n") + 1 for s in out) + suspect.source.count("\n") + 1 > max_lines):
                continue
            out.append(suspect)
        return out[:most]

    def _test_source(self, test: str) -> str:
        return test_source(self._root, test) if self._root else ""

    def _files(self, agent) -> list[str]:
        ws = agent.workspace
        self._root = ws.root
        files = [ws.rel(p) for p in ws.files(ws.root)[:5000]]
        self._python_files = [f for f in files if f.endswith(".py") and not is_test_file(f)]
        return files

    def _sources(self) -> dict[str, str]:
        """The workspace's Python sources (tests left out) as they are: path -> text."""
        return {p: t for p in self._python_files if (t := self._read(p)) is not None}

    def _read(self, path: str) -> str | None:
        target = self._root / path
        try:
            return target.read_text(encoding="utf-8") if target.is_file() else None
        except (OSError, UnicodeDecodeError):
            return None

    def _diff(self, files: dict[str, str]) -> str:
        return "\n".join(line for path, text in sorted(files.items()) for line in difflib.unified_diff(
            (self._read(path) or "").splitlines(), text.splitlines(), f"a/{path}", f"b/{path}", lineterm=""))

    def _write(self, agent, files: dict[str, str]) -> str | None:
        """Write through the agent's permissions and checkpoints; the reason when not allowed."""
        for path, text in files.items():
            denied = agent.permissions.check(_tool(agent, "write_file", WRITE), {"path": path, "content": text})
            if denied:
                return denied
        if agent.checkpoints:
            agent.checkpoints.snapshot()
        for path, text in files.items():
            agent.workspace.write(agent.workspace.resolve(path), text)
        agent.changed = True
        return None


def _tool(agent, name: str, fallback: Tool) -> Tool:
    tool = agent.tools.get(name)
    return tool if tool is not None and tool.kind == fallback.kind else fallback


def _named_in(task: str, tests: list[str]) -> list[str]:
    """The failing tests the task names (by function name), if it names any."""
    return [t for t in tests if re.search(rf"\b{re.escape(t.split('::')[-1].split('[')[0])}\b", task)
            and "::" in t]


def _verdict(baseline: TestReport, report: TestReport, targets: list[str]) -> str | None:
    """None when `report` fixes every target and breaks nothing that passed; else what is wrong."""
    if report.timed_out:
        return "the tests timed out"
    for target in targets:
        if target == SUITE:
            if not report.ok:
                return f"the tests still fail: {report.error_line(SUITE)}"
            continue
        inner = [o for t, o in report.outcomes.items() if t.startswith(target + "::")]
        if report.outcomes.get(target) != "passed" and not (inner and all(o == "passed" for o in inner)):
            culprit = next((t for t in report.failing if t == target or t.startswith(target + "::")), target)
            return f"{target.split('::')[-1]} still fails: {report.error_line(culprit)}"
    broken = sorted(baseline.passed - report.passed)
    if broken:
        return f"breaks {broken[0].split('::')[-1]}: {report.error_line(broken[0])}"
    new = [t for t in report.failing if t not in baseline.failing]
    if new:
        return f"{new[0].split('::')[-1]} fails: {report.error_line(new[0])}"
    return None


def _prompt(task: str, lead: Lead, fresh_start: bool = False, outlines: dict[str, str] | None = None,
            constants: dict[str, str] | None = None) -> str:
    """The failing test and its error, what else the suspects' files define, the code to rewrite, then the task
    and the ask: small models follow what they read last (a new flag's task first, the 1.5B rewrote `main` without
    the flag in 11 of 12 samples; last, 7 of 12)."""
    parts = []
    for test in lead.tests[:3]:
        parts += _failing_test(test, lead.test_sources.get(test, ""), lead.errors.get(test, ""))
    shown = {s.path for s in lead.suspects}
    for path, outline in (outlines or {}).items():  # so that a rewrite uses what exists instead of guessing it
        what = f"What else {path} has" if path in shown else f"What the code below uses from {path}"
        parts.append(f"{what} (use it, do not rewrite it):\n```python\n{outline}\n```")
    for suspect in lead.suspects:
        if suspect.missing:
            owner = f"class `{suspect.name.split('.')[0]}`" if "." in suspect.name else suspect.path
            parts.append(f"`{suspect.name}` does not exist yet. Here is {owner} ({suspect.path}):\n"
                         f"```python\n{_cap(suspect.source)}\n```")
        elif fresh_start:
            parts.append(f"Here is the signature of `{suspect.name}` in {suspect.path}; its body has the bug that "
                         f"makes the test fail:\n```python\n{_skeleton(suspect.source)}\n```")
        else:
            values = (constants or {}).get(suspect.name)
            parts.append(f"Here is `{suspect.name}` from {suspect.path}, the code to change:\n```python\n"
                         + (f"{values}\n\n\n" if values else "") + f"{suspect.source}\n```")
    parts.append(f"The task: {task.strip()[:1500]}")
    parts.append(_ask(lead.suspects))
    return "\n\n".join(parts)


def _failing_test(test: str, source: str, failure: str, fails: str = "fails") -> list[str]:
    """A failing test's source (imports left out) and its error lines, as prompt parts; `fails` says how it fails
    ("still fails" with a candidate, or fails with it where it passed before)."""
    source, where = _without_imports(source), test.split("::")[0]
    if source:
        head = f"Test {test.split('::')[-1]} in {where} {fails}:\n```python\n{source}\n```"
    else:
        head = "" if fails != "fails" else f"The tests in {where} fail."
    return [part for part in (head, f"Error:\n```\n{_error_lines(failure)}\n```") if part]


def _near_misses(candidates: list[Candidate], baseline: TestReport, most: int = 2) -> list[Candidate]:
    """Failed candidates with more tests passing than before, closest first: fewest failing, then those that break
    none. (More passing, not fewer failing: a module that failed to import counts as one failure before, and as
    each test after.) A rewrite that fixes every failing test and breaks one that passed is among the closest:
    started from the signature, the 1.5B's roman numerals passed all ten and lost the range check in 5 of 6."""
    close = [c for c in candidates if c.status == "failed" and (c.scaffold or _more_passing(baseline, c.report))]
    return sorted(close, key=lambda c: (len(c.report.failing), _breaks(baseline, c.report), -len(c.report.passed),
                                        c.size))[:most]


def _more_passing(baseline: TestReport, report: TestReport | None) -> bool:
    return report is not None and not report.timed_out and len(report.passed) > len(baseline.passed)


def _progress(baseline: TestReport, report: TestReport | None) -> int:
    """How many more tests pass in `report` than before; 0 when it breaks one that passed (or timed out)."""
    if report is None or _breaks(baseline, report):
        return 0
    return max(0, len(report.passed) - len(baseline.passed))


def _breaks(baseline: TestReport, report: TestReport) -> bool:
    """Whether `report` timed out or fails a test that passed in `baseline`."""
    return report.timed_out or bool(_broken(baseline, report))


def _broken(baseline: TestReport, report: TestReport) -> list[str]:
    """The tests that passed in `baseline` and do not in `report`."""
    return sorted(baseline.passed - report.passed)


def _gets_past_argparse(baseline: TestReport, report: TestReport, targets: list[str]) -> bool:
    """`report` breaks nothing that passed, and no target fails on an option argparse rejects any more."""
    return not _breaks(baseline, report) and not any(UNRECOGNIZED.search(report.failures.get(t, "")) for t in targets)


def _rebased(lead: Lead, files: dict[str, str], report: TestReport) -> Lead:
    """The lead as it reads with `files` written: the suspects' code and the failing tests' errors."""
    errors = {test: report.failures.get(test, error) for test, error in lead.errors.items()}
    return replace(lead, suspects=[_reread(s, files) or s for s in lead.suspects], errors=errors)


def _reread(suspect: Suspect, files: dict[str, str]) -> Suspect | None:
    """The (existing) suspect as its definition reads in `files`; None when `files` lacks it."""
    text = files.get(suspect.path)
    lines = span(text, suspect.name) if text and not suspect.missing else None
    if not lines:
        return None
    return replace(suspect, start=lines[0], end=lines[1], source="\n".join(text.splitlines()[lines[0] - 1:lines[1]]))


def _past_the_parser(lead: Lead, before: Lead) -> Lead:
    """With a new option declared, what is left is what it does: a parser that the declaration changed and that
    hands the parsed arguments on to another suspect (`set_defaults(func=cmd_list)`) is no longer one. (Shown `main`
    with the declaration, the 1.5B acted on `args.json` there, where the `add` command has none.)"""
    old = {(s.path, s.name): s.source for s in before.suspects}
    parsers = [s for s in lead.suspects if old.get((s.path, s.name)) != s.source and any(
        other is not s and re.search(rf"\b{re.escape(other.name)}\b(?!\s*\()", s.source) for other in lead.suspects)]
    keep = [s for s in lead.suspects if all(s is not p for p in parsers)]
    return replace(lead, suspects=keep) if keep else lead


def _definitions(files: dict[str, str], suspects: list[Suspect]) -> str:
    """The suspects' definitions as they read in `files`, for a prompt."""
    return "\n\n\n".join(found.source for s in suspects if (found := _reread(s, files)))


def _refine_prompt(task: str, lead: Lead, near: Candidate, test_source, reached: list[Suspect] = ()) -> str:
    """Ask for a correction of a candidate that made some failing tests pass: the candidate, then the tests it
    still fails with their errors."""
    names = " and ".join(f"`{s.name}`" for s in lead.suspects if not s.missing) or f"`{lead.suspects[0].name}`"
    passing = len(near.report.passed)
    if near.scaffold and near.declared and near.declared not in near.code:  # the parser is not shown
        parts = [f"The new option is declared now (`{near.declared}`). Here is {names}, which must act on it:\n"
                 f"```python\n{_cap(near.code)}\n```"]
    else:
        state = "declares the new option" if near.scaffold else f"is close: {passing} test(s) pass with it"
        parts = [f"This version of {names} {state}.\n```python\n{_cap(near.code)}\n```"]
    for test in near.report.failing[:2]:
        fails = "still fails" if test in lead.tests else "fails with it (it passed before)"
        parts += _failing_test(test, test_source(test), near.report.failures.get(test, ""), fails)
    for suspect in reached:
        parts.append(f"Those tests also reach `{suspect.name}` in {suspect.path}:\n```python\n{suspect.source}\n```")
    parts.append(f"The task: {task.strip()[:1500]}")
    parts.append("Correct that version so that these tests pass too, keeping what already works. Reply with the whole "
                 "corrected code in one ```python block.")
    return "\n\n".join(parts)


def _outline(text: str, skip: set[str], most: int = 12, only: set[str] | None = None) -> str:
    """A module's imports and its top-level definitions other than `skip`, in brief: functions as their signature
    and the first line of their docstring, classes as their bases and constructor (or their fields). With `only`:
    just those definitions, without the imports."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return ""
    # the imports, so that a rewrite uses them as they are (`from datetime import datetime`: not `datetime.datetime`)
    imports = [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    imports = imports if only is None else []
    out = []
    for node in tree.body:
        if getattr(node, "name", None) in skip or (only is not None and getattr(node, "name", None) not in only):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = (ast.get_docstring(node) or "").strip().splitlines()
            out.append(f"def {node.name}({ast.unparse(node.args)}): ..." + (f"  # {doc[0]}" if doc else ""))
        elif isinstance(node, ast.ClassDef):
            bases = ", ".join(ast.unparse(b) for b in node.bases)
            init = next((m for m in node.body if isinstance(m, ast.FunctionDef) and m.name == "__init__"), None)
            fields = [ast.unparse(m) for m in node.body if isinstance(m, (ast.AnnAssign, ast.Assign))][:8]
            body = [f"    def __init__({ast.unparse(init.args)}): ..."] if init else [f"    {f}" for f in fields]
            decorators = [f"@{ast.unparse(d)}" for d in node.decorator_list]
            out.append("\n".join([*decorators, f"class {node.name}({bases}):" if bases else f"class {node.name}:",
                                   *(body or ["    ..."])]))
    return "\n".join([*imports, *([""] if imports and out else []), *out[:most]])


def _module_file(module: str, files: list[str]) -> str | None:
    """The workspace file of an absolute import (`rates`, `app.rates`), if the workspace has it."""
    stem = module.replace(".", "/")
    return next((f for f in (f"{stem}.py", f"src/{stem}.py") if f in files), None)


def _syntax_error(code: str) -> str:
    try:
        ast.parse(textwrap.dedent(code))
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno})"
    return ""


def _skeleton(source: str, max_lines: int = 30) -> str | None:
    """A short function's signature and docstring with the body left out; None for anything else."""
    node, lines = definition_node(source), textwrap.dedent(source).splitlines()
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or len(lines) > max_lines:
        return None
    first = node.body[0]
    keep = first.end_lineno if ast.get_docstring(node) is not None else first.lineno - 1
    return "\n".join(lines[:keep])


def _without_imports(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not line.startswith(("import ", "from "))).strip()


def _error_lines(failure: str, limit: int = 15) -> str:
    """pytest's `E` lines (the exception and the compared values), else the end of the failure."""
    lines = failure.splitlines()
    chosen, diff = [], False
    for at, line in enumerate(lines):
        if line.startswith("E "):
            # pytest's "Full diff" repeats what the values shown in full already say, at length
            diff = diff or re.match(r"E\s+Full diff:", line) is not None
            chosen += [] if diff else [line if len(line) <= 800 else line[:800] + " ..."]
        # the workspace's frames (relative paths) with their line of code, not the standard library's or
        # site-packages' (absolute paths): `parser.parse_args(argv)` says where a bare `SystemExit: 2` came from
        elif re.match(r"^[^\s/\\]\S*\.py:\d+: in ", line):
            diff = False
            code = lines[at + 1] if at + 1 < len(lines) else ""
            chosen += [line] + ([code] if code.startswith(" ") and code.strip().strip("^~") else [])
    return "\n".join((chosen or lines)[-limit:])


def _ask(suspects: list[Suspect]) -> str:
    """What to write, naming every missing name of the first one's class or file (a method and a property the tests
    use both: asked for one, small models write that one) and the existing suspects to change with them."""
    first = suspects[0]
    if first.missing and "." in first.name:
        cls = first.name.split(".")[0]
        members = [s.name.split(".", 1)[1] for s in suspects if s.missing and s.name.startswith(cls + ".")]
        return (f"Add {_names(members)} to class `{cls}` so that the tests pass. Reply with class `{cls}` holding "
                f"only what you add (the methods it has stay as they are), in one ```python block.")
    if first.missing:
        new = [s.name for s in suspects if s.missing and "." not in s.name and s.path == first.path]
        change = [s.name for s in suspects if not s.missing]
        also = f", and change {_names(change)} as needed," if change else ""
        return (f"Write {_names(new)} for {first.path}{also} so that the tests pass. Reply with the complete new "
                "definitions" + (" and the changed ones" if change else "") + " (and any imports they need) in one "
                "```python block.")
    names = [s.name.split(".")[-1] for s in suspects if not s.missing]
    if len(names) == 1:
        kind = "class" if _begins_class(first) else "function"
        return (f"Rewrite `{names[0]}` so that it does what the task asks and the test passes. Reply with the "
                f"whole {kind} in one ```python block.")
    kinds = "class or function" if any(_begins_class(s) for s in suspects) else "function"
    return (f"Change {_names(names).replace(' and ', ' or ')} (one or several of them) so that they do what the task "
            f"asks and the test passes. Reply with each {kinds} you change, whole, in one ```python block.")


def _begins_class(suspect: Suspect) -> bool:
    """Whether a suspect's code is an undecorated class: its reply can be begun with `class Name`."""
    return suspect.source.lstrip().startswith("class ")


def _names(names: list[str]) -> str:
    quoted = [f"`{n}`" for n in dict.fromkeys(names)]
    return ", ".join(quoted[:-1]) + " and " + quoted[-1] if len(quoted) > 1 else quoted[0]


def _reply_prefix(suspects: list[Suspect], fresh_start: bool = False, task: str = "") -> str:
    """How a candidate must begin: the fence and the first suspect's `def` line, where that is certain. A fresh
    start keeps the signature and docstring it was shown (only the body is rewritten): written from scratch, small
    models rename parameters and restate the docstring, changing an API the tests may not cover. A new function
    whose signature the task spells out (`add blend(color_a, color_b, t=0.5)`) begins with it."""
    first = suspects[0]
    if fresh_start and not first.missing and (skeleton := _skeleton(first.source)):
        return f"```python\n{skeleton}\n"
    if first.missing and "." not in first.name and (params := _signature_in(task, first.name)) is not None:
        return f"```python\ndef {first.name}({params}):\n"
    if first.missing and "." in first.name:  # new members: the class's own line, then only what is new
        opening = _class_opening(first.source)
        return f"```python\n{opening}" if opening else f"```python\nclass {first.name.split('.')[0]}"
    if first.missing and first.name[:1].isupper() and not first.name.isupper():  # CapWords: a class, by PEP 8
        return f"```python\nclass {first.name}"
    if first.missing and first.name.isupper():  # a constant
        return "```python\n"
    if first.missing or first.source.lstrip().startswith("def "):
        return f"```python\ndef {first.name.split('.')[-1]}({_first_parameter(first)}"
    if _begins_class(first):
        return f"```python\nclass {first.name}"
    return "```python\n"


def _class_opening(source: str) -> str | None:
    """A class's decorators and `class` line, then a comment in its body saying that the methods it has are left
    out: asked to add a method, small models copy the whole class back first, and the copy was most of a round's
    decoding (6 replies of 250 tokens for two 3-line methods). The merge puts the new members into the class."""
    node = definition_node(source)
    if not isinstance(node, ast.ClassDef) or not node.body:
        return None
    lines = source.splitlines()
    header = lines[first_line(node) - 1:node.body[0].lineno - 1]
    if not header or not header[-1].rstrip().endswith(":"):
        return None  # a docstring or body on the class line itself
    indent = " " * node.body[0].col_offset
    return "\n".join(header) + f"\n{indent}# (the methods it has stay as they are)\n\n"


def _signature_in(task: str, name: str) -> str | None:
    """The parameters the task gives `name`, as in `distance_km(a, b)`; None where it gives none that parse as
    parameters (`format_duration(5400)` is a call, not a signature)."""
    for match in re.finditer(rf"\b{re.escape(name)}\(([^()]*)\)", task):
        try:
            ast.parse(f"def f({match.group(1)}): pass")
        except SyntaxError:
            continue
        return match.group(1).strip()
    return None


def _heal(reply: str) -> str:
    """`def f( text ):` -> `def f(text):` on the first def line: the forced prefix ends at `(`, where the model's
    own tokens would have merged it with the name after it, so it tends to add a space."""
    return re.sub(r"^(\s*def \w+\()\s+([^)\n]*?)\s*\)", r"\1\2)", reply, count=1, flags=re.M)


def _first_parameter(suspect: Suspect) -> str:
    """The first parameter of the function being rewritten. Forced to end at `(`, the reply must start a token
    the model would have merged with the bracket, and small models then drop or mangle that parameter: `self` of
    a method, `ticket` -> `plate`, `emails` -> `Emails`, `matching_lines(lines, needle)` -> `(needle, ...)`."""
    node = None if suspect.missing else definition_node(suspect.source)
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return ""
    positional = node.args.posonlyargs + node.args.args
    return positional[0].arg if positional else ""


def _cap(text: str, lines: int = 80) -> str:
    rows = text.splitlines()
    return text if len(rows) <= lines else "\n".join(rows[:lines]) + "\n# ..."


def _notes(baseline: TestReport, targets: list[str], lead: Lead | None, tried: list[Candidate],
           small_tried: int = 0) -> str:
    """What the general loop should know: the failing tests, where they point, what the candidates showed."""
    lines = [f"Note: qcoder ran the tests (`{baseline.command}`) before you started: {baseline.summary()}."]
    lines += [f"- {t} fails: {baseline.error_line(t)}" for t in targets[:5]]
    if lead and lead.suspects:
        where = ", ".join(f"`{s.name}` in {s.path}" + (" (does not exist yet)" if s.missing else f" (line {s.start})")
                          for s in lead.suspects)
        lines.append(f"The failing tests point at {where}.")
    if small_tried:
        lines.append(f"{small_tried} one-token changes of that code (operators, comparisons, numbers off by one) "
                     "were tested and none passed.")
    tested = [c for c in tried if c.report is not None]
    if tested:
        lines.append(f"{len(tested)} automatic rewrite(s) were tested and none passed; for example: {tested[0].reason}.")
    lines.append("Fix the code (not the tests) with `edit`, then run the tests.")
    return "\n".join(lines)
