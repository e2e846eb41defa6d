from textstats import average_word_length, longest_word, word_count, words


def test_words_strip_punctuation():
    assert words("Hello, world!") == ["Hello", "world"]


def test_word_count():
    assert word_count("the quick brown fox") == 4
    assert word_count("") == 0


def test_average_word_length():
    assert average_word_length("ab abcd") == 3.0
    assert average_word_length("") == 0.0


def test_longest_word():
    assert longest_word("a quick brown fox") == "quick"
    assert longest_word("pear banana") == "banana"  # the longest, not the last in alphabetical order
    assert longest_word("An elephant, obviously!") == "obviously"  # a word, without its punctuation
    assert longest_word("abc xyz") == "abc"  # the first one wins a tie
    assert longest_word("") is None
