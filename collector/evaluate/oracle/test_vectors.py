"""The committed vectors.json is exactly what gen_vectors.py produces (run with pytest)."""

import subprocess
import sys
from pathlib import Path


def test_vectors_are_up_to_date():
    script = Path(__file__).with_name("gen_vectors.py")
    run = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
