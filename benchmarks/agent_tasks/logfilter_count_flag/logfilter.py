"""Print the log lines at or above a level: `python logfilter.py [--level LEVEL] FILE`."""

import argparse
import sys

LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def matching(lines: list[str], level: str) -> list[str]:
    wanted = LEVELS[LEVELS.index(level):]
    return [line for line in lines if line.split(" ", 2)[1:2] and line.split(" ", 2)[1] in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file")
    parser.add_argument("--level", choices=LEVELS, default="INFO")
    args = parser.parse_args(argv)
    with open(args.file) as f:
        lines = f.read().splitlines()
    for line in matching(lines, args.level):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
