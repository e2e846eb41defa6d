from datetime import date

import textutils
from blog import Post


def test_truncate_and_strip():
    assert textutils.strip_tags("<p>Fish &amp; chips</p>") == "Fish & chips"
    assert textutils.truncate("one two three four", 12) == "one two..."
    assert textutils.truncate("short", 12) == "short"


def test_slugify_basic():
    assert textutils.slugify("Hello, World!") == "hello-world"
    assert textutils.slugify("  Many   spaces here ") == "many-spaces-here"


def test_slugify_accents_and_symbols():
    assert textutils.slugify("Café au lait à Paris") == "cafe-au-lait-a-paris"
    assert textutils.slugify("C++ & Python 3.12") == "c-python-3-12"
    assert textutils.slugify("!!!") == ""


def test_post_url_uses_slug():
    post = Post("What's new in 2.0?", "<p>Lots.</p>", date(2024, 5, 1))
    assert post.url == "/posts/2024/what-s-new-in-2-0/"


def test_post_summary_and_reading_time():
    post = Post("Hi", "<p>" + "word " * 450 + "</p>", date(2024, 1, 1))
    assert post.reading_minutes() == 2
    assert post.summary(20).endswith("...")
