"""Makes the repository root importable (`configs` is not installed by
`pip install -e .` in every setup)."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
if REPO not in sys.path:
  sys.path.insert(0, REPO)
