"""An in-memory user store."""

USERS = {1: {"name": "ada", "email": "ada@example.com"}, 2: {"name": "linus", "email": "linus@example.com"}}


def get_usr(user_id: int) -> dict:
    try:
        return USERS[user_id]
    except KeyError:
        raise LookupError(f"no user {user_id}") from None
