"""Sign-up form validation."""

import re

MIN_LENGTH = 8
USERNAME_RE = re.compile(r"^[a-z0-9_]{3,20}$")


def validate_username(name: str) -> list[str]:
    errors = []
    if not USERNAME_RE.match(name):
        errors.append("username must be 3-20 lowercase letters, digits or underscores")
    return errors


def validate_password(password: str, username: str = "") -> list[str]:
    errors = []
    if len(password) < MIN_LENGTH:
        errors.append(f"password must be at least {MIN_LENGTH} characters")
    has_digit = any(c.isdigit() for c in password)
    has_letter = any(c.isalpha() for c in password)
    if not has_digit and not has_letter:
        errors.append("password must contain both letters and digits")
    if username and username.lower() in password.lower():
        errors.append("password must not contain the username")
    return errors
