"""A tiny todo list stored in todos.json: `python todo.py add TITLE | done ID | list [--all]`."""

import argparse
import sys

from store import load, save


def cmd_add(args) -> int:
    todos = load(args.file)
    new_id = max((t["id"] for t in todos), default=0) + 1
    todos.append({"id": new_id, "title": args.title, "done": False})
    save(args.file, todos)
    print(f"added #{new_id}")
    return 0


def cmd_done(args) -> int:
    todos = load(args.file)
    for todo in todos:
        if todo["id"] == args.id:
            todo["done"] = True
            save(args.file, todos)
            return 0
    print(f"no todo #{args.id}", file=sys.stderr)
    return 1


def cmd_list(args) -> int:
    for todo in load(args.file):
        if args.all or not todo["done"]:
            mark = "x" if todo["done"] else " "
            print(f"[{mark}] #{todo['id']} {todo['title']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", default="todos.json")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add")
    add.add_argument("title")
    add.set_defaults(func=cmd_add)
    done = commands.add_parser("done")
    done.add_argument("id", type=int)
    done.set_defaults(func=cmd_done)
    listing = commands.add_parser("list")
    listing.add_argument("--all", action="store_true", help="include finished todos")
    listing.set_defaults(func=cmd_list)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
