import json

from contacts import Address, Contact, Kind, from_json, to_json


def test_export_format():
    data = json.loads(to_json(Contact("Acme", Kind.COMPANY)))
    assert data == {"name": "Acme", "kind": "company", "address": None, "phone": ""}


def test_round_trip_with_address():
    contact = Contact("Grace", Kind.PERSON, Address("1 Main St", "Arlington", "22201"), "555-0100")
    loaded = from_json(to_json(contact))
    assert loaded == contact
    assert loaded.address.city == "Arlington"
    assert loaded.kind is Kind.PERSON


def test_round_trip_without_address():
    contact = Contact("Acme", Kind.COMPANY)
    assert from_json(to_json(contact)) == contact
