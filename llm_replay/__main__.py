"""``python -m llm_replay``: the llm-replay command, for environments without the script on PATH."""

import sys

from .cli import main

sys.exit(main())
