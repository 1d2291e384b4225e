"""Export hourly metering records (the Azure AI containers' record shape) as JSON Lines, for the operator.

Reads the ledger the settings point at (INFERQ_CONFIG, INFERQ_DATA_DIR, INFERQ_BACKEND). Closed hours only;
record ids are deterministic, so exporting a range again is idempotent for a consumer that upserts by id.
    .venv/bin/python -m scripts.export_metering [--from 2024-05-01] [--to 2024-06-01] [--tenant acme] [--out FILE]
The same as `inferq metering export`, which can also ask a running deployment (--url).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.bootstrap import bootstrap  # noqa: E402
from shared.domain import metering  # noqa: E402
from shared.domain.auth import Caller  # noqa: E402
from shared.domain.errors import InferqError  # noqa: E402
from shared.settings import get_settings  # noqa: E402

OPERATOR = Caller(tenant="", is_admin=True)  # whoever can read the ledger's files is the operator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export hourly metering records as JSON Lines.")
    parser.add_argument("--from", dest="start", help="ISO 8601 (UTC if no offset); default: start of the month")
    parser.add_argument("--to", dest="end", help="ISO 8601, exclusive; default: now (closed hours only)")
    parser.add_argument("--tenant", help="one tenant; default: all")
    parser.add_argument("--out", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        records = bootstrap(get_settings()).billing.metering_records(OPERATOR, args.start, args.end, args.tenant)
    except InferqError as exc:
        print(f"export_metering: {exc.message}", file=sys.stderr)
        return 2
    lines = metering.jsonl(records)
    if args.out:
        args.out.write_text(lines, encoding="utf-8")
        print(f"{len(records)} records → {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
