"""Notes with tags."""


class Note:
    def __init__(self, title: str, body: str = "", tags: list[str] = []):
        self.title = title
        self.body = body
        self.tags = tags

    def tag(self, *names: str) -> None:
        for name in names:
            if name not in self.tags:
                self.tags.append(name)

    def __repr__(self) -> str:
        return f"Note({self.title!r}, tags={self.tags})"


def with_tag(notes: list[Note], tag: str) -> list[Note]:
    return [n for n in notes if tag in n.tags]
