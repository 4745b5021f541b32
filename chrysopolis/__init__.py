# SPDX-License-Identifier: BSD-2-Clause
"""Chrysopolis: Erlang/OTP on seL4 (Microkit + LionsOS), built from pinned sources."""

__version__ = "0.1.0"
