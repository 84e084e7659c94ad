"""Shared code of the STAND-IN tools (tests/standins/).

Nothing here runs a GPU, a model or a network call. The stand-ins parse the same
command lines as the real tools, check their inputs, and write tiny outputs with
the file names and config keys of the real outputs, every config marked
``"standin": true``. See tests/standins/README.md.
"""
