"""`python cli.py ID` prints a user."""

import sys

import store
from service import display_name


def main(argv: list[str]) -> int:
    user_id = int(argv[0])
    if store.get_usr(user_id)["name"] == "root":
        return 1
    print(display_name(user_id))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
