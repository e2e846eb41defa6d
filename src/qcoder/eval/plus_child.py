"""Runs inside the sandbox for evalplus-style tests: `python plus_child.py MODE`.

MODE "reference": run the canonical solution on every input of inputs.pkl, write outputs and timings
to reference.pkl. MODE "check": run the candidate on the base inputs, then the plus inputs, stopping at
the first failure; write verdict.json. Standard library only (it runs under the reliability guard).

Comparison rules follow evalplus: exact equality first; a few tasks have their own oracle; floats
(or an `atol` from the dataset) are compared with atol and rtol=1e-7, types and lengths must match.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import pickle
import signal
import sys
import time

# evalplus's special oracles for MBPP+ tasks whose reference output is one of several right answers.
MBPP_SET_EQUAL = {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
                  "intersection_array", "find_dissimilar", "Diff"}
MBPP_NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}
RTOL = 1e-7


class InputTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise InputTimeout()


def load_function(code: str, entry_point: str):
    namespace = {"__name__": "__solution__"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "solution.py", "exec"), namespace)
    return namespace[entry_point]


def call(fn, args, time_limit: float | None):
    if time_limit:
        signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return fn(*copy.deepcopy(args))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def reference(job: dict) -> dict:
    fn = load_function(job["code"], job["entry_point"])
    result = {}
    for which in ("base", "plus"):
        outputs, times = [], []
        for args in job[which]:
            start = time.perf_counter()
            out = call(fn, args, None)
            times.append(time.perf_counter() - start)
            if job["entry_point"] in MBPP_NOT_NONE and job["family"] == "mbpp":
                out = out is not None
            outputs.append(out)
        result[which] = {"outputs": outputs, "times": times}
    return result


def is_floats(x) -> bool:
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def close(out, exp, atol: float) -> bool:
    """Element-wise |out - exp| <= atol + rtol * |exp|, like numpy.allclose on nested sequences."""
    if isinstance(exp, (list, tuple)):
        return isinstance(out, (list, tuple)) and len(out) == len(exp) and all(map(close, out, exp, [atol] * len(exp)))
    numbers = (int, float)
    if isinstance(exp, numbers) and isinstance(out, numbers) and not math.isnan(exp):
        return out == exp or abs(out - exp) <= atol + RTOL * abs(exp)
    return out == exp


def matches(out, exp, args, job: dict) -> bool:
    name, family, atol = job["entry_point"], job["family"], job["atol"]
    exact = out == exp
    if family == "mbpp":
        if name == "are_equivalent":
            exact = True
        elif name == "sum_div":
            exact = exact or out == 0
        elif name in MBPP_SET_EQUAL:
            exact = set(out) == set(exp)
        elif name in MBPP_NOT_NONE:
            exact = out == exp if isinstance(out, bool) else exp == (out is not None)
    if family == "humaneval" and name == "find_zero":
        xs = args[0]
        return abs(sum(c * out**i for i, c in enumerate(xs))) <= atol
    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if exact or atol == 0:
        return bool(exact)
    if type(out) is not type(exp):
        return False
    return close(out, exp, atol)


def check(job: dict) -> dict:
    verdict = {"base": False, "plus": False, "failed": None}
    try:
        fn = load_function(job["code"], job["entry_point"])
    except BaseException as exc:  # noqa: BLE001 - any failure of the candidate is a verdict
        verdict["failed"] = {"set": "base", "index": None, "error": f"{type(exc).__name__}: {exc}"[:500]}
        return verdict
    for which in ("base", "plus"):
        cases = zip(job[which], job["expected"][which], job["time_limits"][which], strict=True)
        for index, (args, exp, limit) in enumerate(cases):
            try:
                ok = matches(call(fn, args, limit), exp, args, job)
                error = "" if ok else "wrong output"
            except InputTimeout:
                ok, error = False, f"timeout ({limit:.2f} s)"
            except BaseException as exc:  # noqa: BLE001
                ok, error = False, f"{type(exc).__name__}: {exc}"[:500]
            if not ok:
                verdict["failed"] = {"set": which, "index": index, "error": error}
                return verdict
        verdict[which] = True
    return verdict


def main() -> None:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    signal.signal(signal.SIGALRM, _on_alarm)
    with open("job.pkl", "rb") as f:
        job = pickle.load(f)
    if sys.argv[1] == "reference":
        with open("reference.pkl", "wb") as f:
            pickle.dump(reference(job), f)
    else:
        with open("verdict.json", "w") as f:
            json.dump(check(job), f)


if __name__ == "__main__":
    main()
