import cli
import service
import store


def test_new_name():
    assert store.get_user(1)["name"] == "ada"


def test_old_name_is_gone():
    assert not hasattr(store, "get_usr")
    assert not hasattr(service, "get_usr")


def test_callers_use_it(capsys):
    assert service.display_name(2) == "linus <linus@example.com>"
    assert cli.main(["1"]) == 0
    assert capsys.readouterr().out.strip() == "ada <ada@example.com>"
