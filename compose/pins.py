"""Print the project's pinned dependencies, less the named ones, for the Docker images.

``python compose/pins.py torch onnx`` keeps pyproject.toml the one place versions are pinned.
"""

import re
import sys
import tomllib

with open("pyproject.toml", "rb") as fh:
    dependencies = tomllib.load(fh)["project"]["dependencies"]
left_out = {name.lower() for name in sys.argv[1:]}
for requirement in dependencies:
    name = re.split(r"[\s\[=<>!~;]", requirement, maxsplit=1)[0].lower()
    if name not in left_out:
        print(requirement)
