"""Stage and check definitions, one module per upstream component or image."""

from chrysopolis.build import hello, sdk  # noqa: F401
