"""Chrysopolis: Erlang/OTP on seL4 (Microkit + LionsOS), built from pinned sources."""

__version__ = "0.1.0"
