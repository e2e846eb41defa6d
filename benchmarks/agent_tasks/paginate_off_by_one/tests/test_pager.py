import pytest

from pager import page, page_count, page_label

ITEMS = list(range(1, 26))  # 25 results


def test_first_page_starts_with_first_item():
    assert page(ITEMS, 1, 10) == list(range(1, 11))


def test_last_page_holds_the_rest():
    assert page(ITEMS, 3, 10) == [21, 22, 23, 24, 25]


def test_every_item_appears_once():
    pages = [page(ITEMS, n, 7) for n in range(1, page_count(len(ITEMS), 7) + 1)]
    assert [x for p in pages for x in p] == ITEMS


def test_out_of_range():
    with pytest.raises(IndexError):
        page(ITEMS, 4, 10)
    with pytest.raises(IndexError):
        page(ITEMS, 0, 10)


def test_label():
    assert page_label(2, 25, 10) == "Page 2 of 3"
