import pytest

from batching import chunked, count_batches
from uploader import Uploader


class FakeClient:
    def __init__(self):
        self.calls = []

    def post(self, path, payload):
        self.calls.append((path, list(payload)))


def test_exact_multiple():
    assert chunked([1, 2, 3, 4, 5, 6], 3) == [[1, 2, 3], [4, 5, 6]]


def test_partial_last_chunk():
    assert chunked([1, 2, 3, 4, 5, 6, 7], 3) == [[1, 2, 3], [4, 5, 6], [7]]
    assert chunked(["a", "b"], 5) == [["a", "b"]]


def test_empty_and_invalid():
    assert chunked([], 4) == []
    with pytest.raises(ValueError):
        chunked([1, 2], 0)


def test_count_batches():
    assert count_batches(120, 50) == 3
    assert count_batches(100, 50) == 2


def test_upload_sends_every_row():
    client = FakeClient()
    rows = [{"id": i} for i in range(120)]
    assert Uploader(client).upload(rows) == 120
    assert [len(batch) for _, batch in client.calls] == [50, 50, 20]
    assert client.calls[-1][1][-1] == {"id": 119}


def test_plan():
    assert Uploader(FakeClient(), batch_size=50).plan(list(range(120))) == "120 rows in 3 requests"
