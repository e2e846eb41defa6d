"""wordfreq: print the most common words in one or more text files."""

import argparse
import sys

from counting import count_words, top_words


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wordfreq", description=__doc__)
    parser.add_argument("files", nargs="+", help="text files to read")
    parser.add_argument("--top", type=int, default=10, help="how many words to show")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    counts = None
    for path in args.files:
        try:
            with open(path, encoding="utf-8") as handle:
                file_counts = count_words(handle.read())
        except OSError as exc:
            print(f"wordfreq: {path}: {exc.strerror}", file=sys.stderr)
            return 1
        counts = file_counts if counts is None else counts + file_counts
    for word, count in top_words(counts, args.top):
        print(f"{count:>6} {word}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
