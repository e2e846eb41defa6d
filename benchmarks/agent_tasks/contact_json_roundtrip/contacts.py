"""Address-book contacts and their JSON export format."""

import json
from dataclasses import asdict, dataclass
from enum import Enum


class Kind(Enum):
    PERSON = "person"
    COMPANY = "company"


@dataclass
class Address:
    street: str
    city: str
    postcode: str


@dataclass
class Contact:
    name: str
    kind: Kind
    address: Address | None = None
    phone: str = ""


def to_json(contact: Contact) -> str:
    data = asdict(contact)
    data["kind"] = contact.kind.value
    return json.dumps(data, sort_keys=True)


def from_json(text: str) -> Contact:
    return Contact(**json.loads(text))
