"""The library's tests: no Home Assistant, run from the built wheel in a clean venv too."""
