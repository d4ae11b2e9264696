"""The accuracy tables of the README and docs/results.md are what bench/accuracy.py writes from
checkpoints/results.json: a number typed by hand, or a results file changed without the docs, fails here."""
import json
from pathlib import Path

import pytest

import accuracy

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("doc", list(accuracy.GENERATED))
def test_generated_tables_match_the_results_file(doc):
    results_file = ROOT / "checkpoints" / "results.json"
    if not results_file.is_file():
        pytest.skip("no results file")
    text = (ROOT / doc).read_text()
    expected = accuracy.fill(text, json.loads(results_file.read_text()), accuracy.GENERATED[doc])
    assert text == expected, f"{doc}: run python bench/accuracy.py --cached --write-docs"


def test_stale_statements_are_gone():
    """What the docs once said of models and files that changed."""
    docs = {p: p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]}
    for path, text in docs.items():
        assert "still undertrained (64.3%)" not in text, path
        assert "the full table in the README" not in text, path
