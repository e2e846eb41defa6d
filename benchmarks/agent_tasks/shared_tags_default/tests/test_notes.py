from notes import Note, with_tag


def test_new_notes_have_no_tags():
    first = Note("groceries")
    first.tag("urgent")
    second = Note("ideas")
    assert second.tags == []
    assert first.tags == ["urgent"]


def test_given_tags_are_kept():
    note = Note("trip", tags=["travel"])
    assert note.tags == ["travel"]
    note.tag("travel", "summer")
    assert note.tags == ["travel", "summer"]


def test_filter():
    a, b = Note("a"), Note("b")
    a.tag("x")
    assert with_tag([a, b], "x") == [a]
