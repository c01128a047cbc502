"""Merge ``zoo eval --result`` files into the accuracy table (model x framework, top-1).

    python -m zoo.report results/*.json            # a Markdown table on stdout

One file per cell lets the table be computed as one batch, on one machine or many, in any order;
a cell evaluated twice keeps the run over more images.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(paths: list[str]) -> str:
    cells: dict[tuple[str, str], dict] = {}
    published: dict[str, float | None] = {}
    for path in paths:
        try:
            row = json.loads(Path(path).read_text())
            key = (row["model"], f"{row['framework']} {row.get('mode', '')}".strip())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"error: {path}: not a zoo eval --result file ({type(exc).__name__})") from None
        if key not in cells or row["images"] > cells[key]["images"]:
            cells[key] = row
        published[row["model"]] = row.get("published_top1")
    models = sorted({m for m, _ in cells})
    columns = sorted({c for _, c in cells})
    lines = ["| model | published | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for model in models:
        pub = published.get(model)
        values = []
        for column in columns:
            row = cells.get((model, column))
            values.append(f"{row['top1']:.2f} ({row['images']})" if row else "-")
        lines.append(f"| {model} | {pub if pub is not None else '-'} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n\ntop-1 % (images evaluated)"


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m zoo.report RESULT.json ...", file=sys.stderr)
        return 2
    print(table(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
