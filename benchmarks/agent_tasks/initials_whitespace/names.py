"""Name helpers for the contacts page."""


def initials(full_name: str, limit: int = 2) -> str:
    parts = full_name.strip().split(" ")
    letters = [part[0].upper() for part in parts]
    if len(letters) > limit:
        letters = [letters[0], letters[-1]]
    return "".join(letters)


def sort_key(full_name: str) -> tuple[str, str]:
    parts = full_name.split()
    if not parts:
        return ("", "")
    return (parts[-1].casefold(), " ".join(parts[:-1]).casefold())


def display_name(full_name: str, nickname: str = "") -> str:
    name = " ".join(full_name.split())
    if nickname:
        return f"{name} ({nickname})" if name else nickname
    return name
