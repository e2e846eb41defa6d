"""Account creation for the members area."""

import hashlib
import os

from validators import validate_password, validate_username


class SignupError(Exception):
    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


def hash_password(password: str, salt: bytes) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 100_000)
    return salt.hex() + ":" + digest.hex()


def signup(users: dict, username: str, password: str) -> None:
    errors = validate_username(username) + validate_password(password, username)
    if username in users:
        errors.append("username already taken")
    if errors:
        raise SignupError(errors)
    users[username] = hash_password(password, os.urandom(16))
