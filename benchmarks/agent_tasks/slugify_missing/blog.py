"""Blog post model and URL building."""

from dataclasses import dataclass
from datetime import date

from textutils import strip_tags, truncate, word_count


@dataclass
class Post:
    title: str
    body: str
    published: date

    @property
    def slug(self) -> str:
        return self.title.lower().replace(" ", "-")

    @property
    def url(self) -> str:
        return f"/posts/{self.published.year}/{self.slug}/"

    def summary(self, limit: int = 80) -> str:
        return truncate(strip_tags(self.body), limit)

    def reading_minutes(self) -> int:
        return max(1, round(word_count(self.body) / 200))
