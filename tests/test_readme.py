"""The README's "How it works" stage table names every stage kind of launcher/stages.py, and nothing else."""
import re
from pathlib import Path

from launcher.stages import KINDS

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_stage_table_lists_every_kind_of_the_pipeline():
    text = README.read_text()
    section = text[text.index("## How it works"):text.index("## Artifacts are content-addressed")]
    listed = re.findall(r"^\| `([a-z_0-9]+)` \|", section, re.M)
    assert listed == list(KINDS), "README's stage table and launcher/stages.py disagree: update the table"
