"""Placeholder until the Triton providers land (issue 4): registers nothing yet."""

PROVIDERS: list = []
