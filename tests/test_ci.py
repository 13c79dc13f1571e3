"""CI runs what the README promises."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readmes_test_command_verbatim_then_style_and_types():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"\*\*2\. Install and run the whole test suite\*\*.*?```bash\n(.+?)\n```", readme, re.S)
    assert command is not None
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    steps = [f"{command.group(1)} || status=1", ".venv/bin/ruff check src tests benchmarks || status=1",
             ".venv/bin/mypy || status=1", 'exit "$status"']
    assert ci[-len(steps):] == steps  # install and test, then the checks, then any failure's status
