"""Writes the Podcasting 2.0 namespace's documented tags (name, parents, attributes and which are required) as
JSON, from a checkout of github.com/Podcastindex-org/podcast-namespace (CC0): only the names, for
tests/feeds/test_feed_schema.py. Usage: python scripts/podcast_namespace_names.py CHECKOUT > tests/data/...json"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

TAG = re.compile(r"^`<podcast:(\w+)>`")
PARENT = re.compile(r"<((?:podcast:)?\w+)>")
ATTRIBUTE = re.compile(r"^[-*] (?:`([\w-]+)`|\*\*([\w-]+):\*\*)(.*)$")


def section(lines: list[str], title: str) -> list[str]:
    out: list[str] = []
    inside = False
    for line in lines:
        if line.startswith("### "):
            inside = line[4:].strip() == title
            continue
        if inside:
            out.append(line)
    return out


def read_tag(text: str) -> tuple[str, dict[str, object]] | None:
    lines = text.splitlines()
    name = next((m.group(1) for line in lines[:6] if (m := TAG.match(line.strip()))), None)
    if name is None:
        return None
    parent_line = next((line for line in section(lines, "Parent") if line.strip()), "")
    attributes: dict[str, str] = {}
    for line in section(lines, "Attributes"):
        if (m := ATTRIBUTE.match(line)) is not None:
            attributes[m.group(1) or m.group(2)] = "required" if "(required)" in m.group(3) else "optional"
    parents = {p if p in ("channel", "item") or p.startswith("podcast:") else f"podcast:{p}"
               for p in PARENT.findall(parent_line)}
    return name, {"parents": sorted(parents), "attributes": attributes}


def main(checkout: Path) -> None:
    tags = {}
    for path in sorted((checkout / "docs" / "tags").glob("*.md")):
        if "deprecated" not in path.name and (found := read_tag(path.read_text(encoding="utf-8"))) is not None:
            tags[found[0]] = found[1]
    json.dump(tags, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
