"""Stage and check definitions, one module per upstream component or image.

Every module in this package is imported, so a new component is one new file.
"""

import importlib
import pkgutil

for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_m}")
