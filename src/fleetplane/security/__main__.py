"""``python -m fleetplane.security``: print a new random key in keyring format."""

from fleetplane.security.keyring import generate_key_text

print(generate_key_text())
