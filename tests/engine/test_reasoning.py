"""<think> splitting, in one go and streamed in every possible way."""

import random

import pytest

from qcoder.engine.reasoning import ReasoningStream, split_reasoning

CASES = [
    # (output, starts_in_thinking, reasoning, content)
    ("<think>\nLet me think.\nTwo steps.\n</think>\n\nThe answer is 4.", False, "Let me think.\nTwo steps.", "The answer is 4."),
    ("  <think>short</think>answer", False, "short", "answer"),
    ("<think>\n\n</think>\n\nNo thinking needed.", False, "", "No thinking needed."),
    ("Plain answer with no thinking.\n", False, None, "Plain answer with no thinking.\n"),
    ("Talking about <think> tags mid-text </think> is content.", False, None,
     "Talking about <think> tags mid-text </think> is content."),
    ("<thinking is not the tag", False, None, "<thinking is not the tag"),
    ("<thi", False, None, "<thi"),
    ("<think>\nCut off while thinking about x < y and </thi", False, "Cut off while thinking about x < y and </thi", ""),
    ("<think>\nstill going\n\n", False, "still going", ""),
    ("Reasoning already open.\n</think>\n\nDone.", True, "Reasoning already open.", "Done."),
    ("</think>\nAnswer only.", True, "", "Answer only."),
    ("cut off", True, "cut off", ""),
    ("<think>a</think>b</think>c", False, "a", "b</think>c"),
    ("<think>数学 😀 reasoning</think>\n答案 😀", False, "数学 😀 reasoning", "答案 😀"),
]


@pytest.mark.parametrize(("text", "starts_in_thinking", "reasoning", "content"), CASES)
def test_split(text, starts_in_thinking, reasoning, content):
    assert split_reasoning(text, starts_in_thinking=starts_in_thinking) == (reasoning, content)


def chunkings(text: str, seed: int):
    yield list(text)  # one character at a time
    rng = random.Random(seed)
    for _ in range(5):
        pieces, i = [], 0
        while i < len(text):
            n = rng.randint(1, 6)
            pieces.append(text[i : i + n])
            i += n
        yield pieces


@pytest.mark.parametrize(("text", "starts_in_thinking", "reasoning", "content"), CASES)
def test_streaming_equals_split(text, starts_in_thinking, reasoning, content):
    for pieces in chunkings(text, seed=len(text)):
        stream = ReasoningStream(starts_in_thinking=starts_in_thinking)
        got_reasoning, got_content = "", ""
        for piece in pieces:
            r, c = stream.feed(piece)
            got_reasoning, got_content = got_reasoning + r, got_content + c
        r, c = stream.finish()
        assert (got_reasoning + r, got_content + c) == (reasoning or "", content)


def test_content_streams_before_the_end():
    stream = ReasoningStream()
    assert stream.feed("<think>plan") == ("plan", "")
    assert stream.feed("</think>\n\nHel") == ("", "Hel")
    assert stream.feed("lo") == ("", "lo")
    assert stream.finish() == ("", "")


def test_tag_fragments_are_held_back():
    stream = ReasoningStream()
    assert stream.feed("  <thi") == ("", "")
    assert stream.feed("nk>\nidea\n</th") == ("idea", "")
    assert stream.feed("ink>") == ("", "")
    assert stream.feed("\n\nanswer") == ("", "answer")
