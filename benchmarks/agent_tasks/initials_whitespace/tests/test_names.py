from directory import Contact, format_entry, render_directory
from names import display_name, initials, sort_key


def test_simple_names():
    assert initials("Grace Hopper") == "GH"
    assert initials("ada") == "A"
    assert initials("Maria de la Cruz") == "MC"


def test_unicode_names():
    assert initials("élodie durand") == "ÉD"
    assert sort_key("Ölaf Östberg") == ("östberg", "ölaf")


def test_extra_whitespace():
    assert initials("Ada  Lovelace") == "AL"
    assert initials("  Alan\tTuring \n") == "AT"


def test_blank_name():
    assert initials("") == ""
    assert initials("   ") == ""


def test_directory_with_messy_names():
    contacts = [
        Contact("Linus  Torvalds", "linus@example.org"),
        Contact("", "anon@example.org"),
        Contact("Ada Lovelace", "ada@example.org"),
    ]
    assert render_directory(contacts) == [
        "[?] (no name) <anon@example.org>",
        "[AL] Ada Lovelace <ada@example.org>",
        "[LT] Linus Torvalds <linus@example.org>",
    ]


def test_format_entry_plain():
    assert format_entry(Contact("Grace Hopper", "grace@example.org")) == "[GH] Grace Hopper <grace@example.org>"


def test_display_name():
    assert display_name("  Grace   Hopper ", "Amazing Grace") == "Grace Hopper (Amazing Grace)"
    assert display_name("", "ghost") == "ghost"
