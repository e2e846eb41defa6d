import math

import pytest
import torch

from qcoder.engine.sampling import Sampler, SampleRow, SamplingParams
from qcoder.errors import QcoderError

PROBS = [0.5, 0.3, 0.15, 0.05]


def logits_of(probs, rows=1):
    return torch.tensor([math.log(p) for p in probs]).repeat(rows, 1)


def row(prompt=(), output=(), seed=None, **params):
    p = SamplingParams(seed=seed, **params)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return SampleRow(p, list(prompt) + list(output), len(prompt), gen)


@pytest.mark.parametrize(
    "field,value",
    [
        ("temperature", -0.1),
        ("top_p", 0.0),
        ("top_k", -3),
        ("min_p", 1.5),
        ("repetition_penalty", 0.0),
        ("presence_penalty", 3.0),
        ("frequency_penalty", -2.5),
        ("max_tokens", 0),
        ("logprobs", 21),
        ("thinking_budget", -1),
    ],
)
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(QcoderError, match=field):
        SamplingParams(**{field: value})


def test_from_generation_config_takes_checkpoint_defaults_and_overrides():
    cfg = {
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "repetition_penalty": 1.05,
        "eos_token_id": [151645, 151643],
    }
    p = SamplingParams.from_generation_config(cfg, top_p=None, max_tokens=12)
    assert (p.temperature, p.top_p, p.top_k, p.repetition_penalty, p.max_tokens) == (0.7, 0.8, 20, 1.05, 12)
    assert SamplingParams.from_generation_config({"do_sample": False, "temperature": 0.7}).temperature == 0
    assert SamplingParams.from_generation_config(None, temperature=0.0).greedy
    with pytest.raises(QcoderError, match="nonsense"):
        SamplingParams.from_generation_config({}, nonsense=1)


def test_greedy_is_argmax_per_row():
    logits = torch.tensor([[0.0, 3.0, 1.0], [5.0, 0.0, 1.0]])
    tokens, logprobs = Sampler()(logits, [row(temperature=0), row(temperature=0)])
    assert tokens == [1, 0]
    assert logprobs == [None, None]


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.25]])
    out = Sampler._apply_penalties(logits.clone(), [row(prompt=[0], output=[1, 1], repetition_penalty=2.0)])
    assert out.tolist() == [[1.0, -2.0, 0.5, 0.25]]
    # Through the sampler: the penalised favourite loses to the runner-up.
    tokens, _ = Sampler()(torch.tensor([[2.0, 1.5, 0.0]]), [row(prompt=[0], temperature=0, repetition_penalty=2.0)])
    assert tokens == [1]


def test_seen_tokens_grow_with_the_sequence_and_penalise_as_a_fresh_set_does():
    from qcoder.engine.sampling import SeenTokens

    seen, ids = SeenTokens(), [5, 3, 5]
    assert sorted(seen.update(ids).tolist()) == [3, 5]
    ids += [3, 7, 9, 7]
    assert sorted(seen.update(ids).tolist()) == [3, 5, 7, 9]
    logits = torch.randn(1, 12)
    kept = row(prompt=ids, repetition_penalty=1.3)
    kept.seen = seen
    fresh = Sampler._apply_penalties(logits.clone(), [row(prompt=ids, repetition_penalty=1.3)])
    assert torch.equal(Sampler._apply_penalties(logits.clone(), [kept]), fresh)


def test_presence_and_frequency_penalties_count_output_tokens_only():
    logits = torch.zeros(1, 4)
    r = row(prompt=[2, 3], output=[0, 0, 1], presence_penalty=0.5, frequency_penalty=0.25)
    out = Sampler._apply_penalties(logits, [r])
    assert out.tolist() == [[-(2 * 0.25 + 0.5), -(0.25 + 0.5), 0.0, 0.0]]


def sample_support(probs, n=400, **params):
    sampler = Sampler()
    torch.manual_seed(0)
    tokens, _ = sampler(logits_of(probs, n), [row(**params) for _ in range(n)])
    return set(tokens)


def test_top_k_top_p_min_p_cut_the_support():
    assert sample_support(PROBS) == {0, 1, 2, 3}
    assert sample_support(PROBS, top_k=2) == {0, 1}
    assert sample_support(PROBS, top_p=0.75) == {0, 1}  # 0.5 + 0.3 already covers 0.75
    assert sample_support(PROBS, top_p=0.5) == {0}
    assert sample_support(PROBS, min_p=0.2) == {0, 1, 2}  # keeps p >= 0.2 * 0.5
    assert sample_support(PROBS, min_p=0.7) == {0}
    assert sample_support(PROBS, top_k=3, top_p=0.9, min_p=0.4) == {0, 1}


def test_top_p_alone_takes_its_nucleus_from_likely_tokens_exactly_as_a_sort_of_the_vocabulary(monkeypatch):
    from qcoder.engine import sampling

    torch.manual_seed(4)
    logits = torch.randn(3, 5000)
    logits[:, :40] += torch.linspace(14, 8, 40)  # a head of likely tokens and a long tail, as a code model's are
    assert sampling._nucleus_candidates(logits, [0.95, 0.8, 0.99])[0].shape == (3, 40)  # the quick way here
    rows = [row(top_p=0.95, seed=1), row(top_p=0.8, seed=2, temperature=0.7), row(top_p=0.99, seed=3)]
    quick = Sampler().distributions(logits, rows)
    def seeded_draws():
        return [Sampler()(logits[i : i + 1], [row(top_p=r.params.top_p, temperature=r.params.temperature,
                                                   seed=i)])[0][0] for i, r in enumerate(rows)]

    quick_tokens = seeded_draws()
    monkeypatch.setattr(sampling, "NUCLEUS_FLOOR", 1.0)  # no token above it: the whole vocabulary is sorted
    full = Sampler().distributions(logits, rows)
    assert torch.allclose(quick, full, atol=1e-6) and (full > 0).sum(dim=-1).tolist() == (quick > 0).sum(dim=-1).tolist()
    assert 1 < (full > 0).sum(dim=-1).min() and (full > 0).sum(dim=-1).max() < 40  # nuclei of several tokens
    # the same seeded draws: the exponential race reads the same first numbers of a row's generator
    assert quick_tokens == seeded_draws()


def test_sampling_frequencies_follow_the_renormalised_distribution():
    n = 8000
    torch.manual_seed(1)
    tokens, _ = Sampler()(logits_of(PROBS, n), [row(top_k=3) for _ in range(n)])
    counts = torch.bincount(torch.tensor(tokens), minlength=4).float() / n
    expected = torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95
    assert torch.allclose(counts, expected, atol=0.025), counts


def test_temperature_sharpens():
    n = 4000
    torch.manual_seed(2)
    tokens, _ = Sampler()(logits_of(PROBS, n), [row(temperature=0.25) for _ in range(n)])
    # p^4 renormalised: 0.5^4 / sum = 0.88...
    p0 = 0.5**4 / sum(p**4 for p in PROBS)
    assert abs(tokens.count(0) / n - p0) < 0.025


def test_seeded_rows_do_not_depend_on_batch_neighbours():
    vocab = 50
    torch.manual_seed(3)
    steps = [torch.randn(3, vocab) for _ in range(8)]
    alone = row(seed=7)
    alone_tokens = [Sampler()(s[1:2], [alone])[0][0] for s in steps]
    rows = [row(), row(seed=7), row(seed=9, top_k=5)]
    batched = [Sampler()(s, rows)[0][1] for s in steps]
    assert alone_tokens == batched
    again = row(seed=7)
    assert [Sampler()(s[1:2], [again])[0][0] for s in steps] == alone_tokens
    other = row(seed=8)
    assert [Sampler()(s[1:2], [other])[0][0] for s in steps] != alone_tokens


def test_logprobs_are_raw_model_logprobs_with_top_n():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    tokens, logprobs = Sampler()(logits, [row(prompt=[0], temperature=0, repetition_penalty=10.0, logprobs=2)])
    raw = torch.log_softmax(logits[0], -1)
    assert tokens == [1]  # the penalty moved the choice ...
    chosen, top = logprobs[0]
    assert chosen == pytest.approx(raw[1].item())  # ... but logprobs describe the model
    assert [t for t, _ in top] == [0, 1]
    assert top[0][1] == pytest.approx(raw[0].item())
    _, logprobs = Sampler()(logits, [row(temperature=0, logprobs=0)])
    assert logprobs[0][1] == []


def test_forced_token_replaces_the_sample():
    r = row(temperature=0)
    r.forced_token = 3
    tokens, _ = Sampler()(torch.tensor([[5.0, 0.0, 0.0, 0.0]]).repeat(2, 1), [r, row(temperature=0)])
    assert tokens == [3, 0]
