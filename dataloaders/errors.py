"""The one exception type the data pipeline raises for bad input (files, rows, videos)."""
from __future__ import annotations


class DataError(ValueError):
    """Bad input data; the message is one line naming the file / row / key and what was expected."""
