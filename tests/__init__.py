"""The test suite. Importing it first makes numpy and pandas unimportable, for the
reasons below."""

import importlib.abc
import sys

# numpy is not a dependency and CI has none, but a developer machine often does, and
# pyarrow then uses it quietly. Block it before ``ledger`` or pyarrow is imported, so
# that any use of it in the package fails here too. pandas goes with it: pyarrow imports
# pandas to probe the values it converts, and a pandas that cannot import numpy fails
# half-way (pyarrow then crashed). Both are installed for the MLflow tests, which run
# MLflow in processes of their own (tests/mlflow_driver.py, ``mlflow server``).


class _NoNumpy(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name.split(".")[0] in ("numpy", "pandas"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by tests/__init__.py)")


if "numpy" not in sys.modules:
    sys.meta_path.insert(0, _NoNumpy())
