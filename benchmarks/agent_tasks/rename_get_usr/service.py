"""Business logic on top of the store."""

from store import get_usr


def display_name(user_id: int) -> str:
    user = get_usr(user_id)
    return f"{user['name']} <{user['email']}>"
