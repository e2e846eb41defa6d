"""Render the contact directory."""

from dataclasses import dataclass

from names import initials, sort_key


@dataclass
class Contact:
    name: str
    email: str


def format_entry(contact: Contact) -> str:
    badge = initials(contact.name) or "?"
    name = " ".join(contact.name.split()) or "(no name)"
    return f"[{badge}] {name} <{contact.email}>"


def render_directory(contacts: list[Contact]) -> list[str]:
    ordered = sorted(contacts, key=lambda c: sort_key(c.name))
    return [format_entry(c) for c in ordered]
