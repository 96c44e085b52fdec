"""Not collected by the suite (no test_ prefix): `python -m pytest tests/scripts/env_probe.py`
writes the environment its test sees to $ENV_PROBE_OUT, for test_docs."""

import json
import os


def test_write_environment():
  with open(os.environ['ENV_PROBE_OUT'], 'w', encoding='utf-8') as f:
    json.dump(dict(os.environ), f)
