#!/usr/bin/env python
"""Write the WordNet 3.0 noun data shipped with v2pe (Long-VQA answer normalisation).

Reads `index.noun` and `noun.exc` of a WordNet 3.0 dict folder (Debian `wordnet-base`
installs it at /usr/share/wordnet) exactly as `NounLemmatizer.from_dir` does, and writes

- src/v2pe/eval/scorers/data/wordnet3_nouns.txt.gz: the noun lemma set and the
  exception map in the packed format of `v2pe.eval.scorers.wordnet` (deterministic:
  sorted, gzip with mtime 0);
- src/v2pe/eval/scorers/data/WORDNET_LICENSE: the WordNet 3.0 licence, taken verbatim
  from the header of index.noun.

    apt-get install wordnet-base
    python tools/make_wordnet_nouns.py [--wordnet-dir /usr/share/wordnet] [--check]

With --check nothing is written; the exit status is 1 when the packaged files differ
from what the folder gives.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from v2pe.eval.scorers.wordnet import NounLemmatizer, decode_packed, encode_packed  # noqa: E402

DATA_DIR = REPO_ROOT / "src" / "v2pe" / "eval" / "scorers" / "data"
LICENSE_LINE = re.compile(r"^  (\d+) ?(.*?)\s*$")


def licence_text(index_noun: Path) -> str:
    """The numbered licence header of a WordNet 3.0 data file, without its line numbers."""
    lines = []
    with open(index_noun, encoding="utf-8") as index:
        for number, line in enumerate(index, start=1):
            match = LICENSE_LINE.match(line)
            if not line.startswith(" "):
                break
            if match is None or int(match.group(1)) != number:
                raise SystemExit(f"{index_noun}:{number}: unexpected licence header line {line!r}")
            lines.append(match.group(2))
    text = "\n".join(lines).strip("\n") + "\n"
    if "WordNet 3.0 Copyright 2006 by Princeton University" not in text:
        raise SystemExit(f"{index_noun}: no WordNet 3.0 licence in its header")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wordnet-dir", type=Path, default=Path("/usr/share/wordnet"),
                        help="WordNet 3.0 dict folder holding index.noun and noun.exc")
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR, help="where to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare with the files there instead of writing")
    args = parser.parse_args(argv)

    folder = args.wordnet_dir
    if not ((folder / "index.noun").is_file() and (folder / "noun.exc").is_file()):
        raise SystemExit(f"{folder}: no index.noun and noun.exc (apt-get install wordnet-base)")
    lemmatizer = NounLemmatizer.from_dir(folder)
    packed = encode_packed(lemmatizer.nouns, lemmatizer.exceptions)
    if decode_packed(packed) != (lemmatizer.nouns, lemmatizer.exceptions):
        raise SystemExit("internal error: the packed data does not read back the same")
    outputs = {"wordnet3_nouns.txt.gz": packed,
               "WORDNET_LICENSE": licence_text(folder / "index.noun").encode("utf-8")}

    if args.check:
        stale = [name for name, data in outputs.items()
                 if not (args.out_dir / name).is_file() or (args.out_dir / name).read_bytes() != data]
        for name in stale:
            print(f"{args.out_dir / name}: differs from what {folder} gives", file=sys.stderr)
        return 1 if stale else 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in outputs.items():
        (args.out_dir / name).write_bytes(data)
        print(f"wrote {args.out_dir / name} ({len(data)} bytes)")
    print(f"{len(lemmatizer.nouns)} noun lemmas, {len(lemmatizer.exceptions)} exceptions from {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
