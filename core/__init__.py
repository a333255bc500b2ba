"""The core: the types and ports every part shares. Imports nothing of the project."""
