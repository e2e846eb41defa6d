"""Small statistics about a piece of text."""


def words(text):
    """The words of `text`, split on whitespace, without surrounding punctuation."""
    return [word.strip(".,;:!?\"'()") for word in text.split() if word.strip(".,;:!?\"'()")]


def word_count(text):
    """How many words `text` has."""
    return len(words(text))


def average_word_length(text):
    """The mean length of the words in `text` (0.0 for text without words)."""
    found = words(text)
    if not found:
        return 0.0
    return sum(len(word) for word in found) / len(found)


def longest_word(text):
    """The longest word in `text`; the first one wins a tie. None for text without words."""
    found = words(text)
    if not found:
        return None
    return min(found, key=len)
