"""Table storage helpers shared by the job store and the usage ledger."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from azure.data.tables import EdmType, EntityProperty

# Characters every key may hold as they are; anything else (`/ \ # ?`, control characters, very long ids from a
# producer) is replaced by a digest, so any id maps to one valid key. The real values are kept as properties.
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.:=@+-]{1,256}$")


def table_key(value: str) -> str:
    if _PLAIN_KEY.match(value) and not value.startswith("~"):
        return value
    return "~" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def int64(value: int) -> EntityProperty:
    """Token counts as Edm.Int64: totals may pass 2**31."""
    return EntityProperty(value, EdmType.INT64)


def as_int(value: Any) -> int:
    return int(value.value if isinstance(value, EntityProperty) else value)
