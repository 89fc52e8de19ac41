"""The registered tasks. Each module holds one env class with its env card in the docstring."""
