"""CLI: `qcoder pull [NAME]` and `qcoder models [--json]`."""

from __future__ import annotations

from qcoder.model.registry import DEFAULT_MODEL


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pull",
        help="download and verify a model into the cache",
        description="Fetch a model into the cache and verify it; prints its path. Safe to interrupt and re-run.",
    )
    p.add_argument(
        "name", nargs="?", default=DEFAULT_MODEL, help=f"registry name or HF repo id (default: {DEFAULT_MODEL})"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_pull)
    p = subparsers.add_parser("models", help="list known and cached models")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=_models)


def _pull(args) -> int:
    import sys
    import time

    from qcoder.model.registry import pull

    start = time.monotonic()
    path = pull(args.name, progress=not args.quiet)
    print(f"qcoder: {args.name} ready in {time.monotonic() - start:.1f} s", file=sys.stderr)
    print(path)
    return 0


def _models(args) -> int:
    import sys

    from qcoder.model.registry import list_models

    rows = list_models()
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="qcoder models")
    for column in ("name", "source", "size", "present", "path"):
        table.add_column(column, overflow="fold")
    for row in rows:
        name = row["name"] + (" (default)" if row["default"] else "") + (" (agent)" if row.get("agent_default") else "")
        size = f"{row['size'] / 1e6:,.0f} MB" if row["size"] is not None else "-"
        table.add_row(name, row["source"], size, "yes" if row["present"] else "no", row["path"] or "-")
    # Piped output gets a wide table instead of rich's 80-column default, so names and paths stay on one line.
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    return 0
