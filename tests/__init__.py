"""The test suite. Importing it first makes numpy unimportable, for the reason below."""

import importlib.abc
import sys

# numpy is not a dependency and CI has none, but a developer machine often does, and
# pyarrow then uses it quietly. Block it before ``ledger`` or pyarrow is imported, so
# that any use of it in the package fails here too, not only on CI.


class _NoNumpy(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "numpy" or name.startswith("numpy."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by tests/__init__.py)")


if "numpy" not in sys.modules:
    sys.meta_path.insert(0, _NoNumpy())
