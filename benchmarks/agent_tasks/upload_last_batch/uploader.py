"""Upload report rows to the reporting API in batches."""

from batching import chunked, count_batches

MAX_BATCH = 50


class Uploader:
    def __init__(self, client, batch_size: int = MAX_BATCH):
        self.client = client
        self.batch_size = batch_size
        self.sent = 0

    def upload(self, rows) -> int:
        rows = list(rows)
        for batch in chunked(rows, self.batch_size):
            self.client.post("/rows", batch)
            self.sent += len(batch)
        return self.sent

    def plan(self, rows) -> str:
        requests = count_batches(len(rows), self.batch_size)
        return f"{len(rows)} rows in {requests} requests"
