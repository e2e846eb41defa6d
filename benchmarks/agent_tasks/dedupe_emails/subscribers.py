"""The newsletter's subscriber list."""


def dedupe(emails: list[str]) -> list[str]:
    """Each subscriber once, in the order they signed up."""
    seen = set()
    out = []
    for email in emails:
        if email not in seen:
            seen.add(email)
            out.append(email)
    return out


def domains(emails: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for email in dedupe(emails):
        domain = email.rsplit("@", 1)[-1].lower()
        counts[domain] = counts.get(domain, 0) + 1
    return counts
