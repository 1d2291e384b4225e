"""Table storage helpers shared by the job store and the usage ledger."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

from azure.data.tables import EdmType, EntityProperty

from shared.adapters.azure.probe import PING_OPTIONS, ping

if TYPE_CHECKING:
    from azure.data.tables import TableClient

# Characters every key may hold as they are; anything else (`/ \ # ?`, control characters, very long ids from a
# producer) is replaced by a digest, so any id maps to one valid key. The real values are kept as properties.
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.:=@+-]{1,256}$")


def table_key(value: str) -> str:
    if _PLAIN_KEY.match(value) and not value.startswith("~"):
        return value
    return "~" + hashlib.sha256(value.encode("utf-8")).hexdigest()


# No entity has this key (`table_key` never gives it): a point read of it is one cheap request, answered 404.
PING_KEY = "~ping"


def ping_table(table: TableClient, timeout_s: float) -> None:
    """Readiness of a table: a point read of an entity that does not exist (a 404 is an answer)."""
    ping(
        f"table {table.table_name}",
        lambda: table.get_entity(PING_KEY, PING_KEY, **PING_OPTIONS),
        timeout_s=timeout_s,
    )


def int64(value: int) -> EntityProperty:
    """Token counts as Edm.Int64: totals may pass 2**31."""
    return EntityProperty(value, EdmType.INT64)


def as_int(value: Any) -> int:
    return int(value.value if isinstance(value, EntityProperty) else value)
