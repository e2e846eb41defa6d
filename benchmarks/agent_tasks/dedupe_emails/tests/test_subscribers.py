from subscribers import dedupe, domains


def test_case_and_spaces():
    assert dedupe(["Ann@Example.com", " ann@example.com", "bob@x.org"]) == ["Ann@Example.com", "bob@x.org"]


def test_first_spelling_trimmed():
    assert dedupe(["  Zoe@Mail.net ", "zoe@mail.net"]) == ["Zoe@Mail.net"]


def test_blank_entries_skipped():
    assert dedupe(["", "   ", "a@b.c"]) == ["a@b.c"]


def test_domains():
    assert domains(["a@x.org", "A@X.org", "b@y.org"]) == {"x.org": 1, "y.org": 1}
