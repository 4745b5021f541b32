# SPDX-License-Identifier: BSD-2-Clause
from chrysopolis.cli import main

main()
