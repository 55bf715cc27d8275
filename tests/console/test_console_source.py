"""The console's copies of what the server decides: the file extensions its playground offers and classifies
(console/src/form.ts) are those promptd's upload classifies (faces/dify/files.py) and reads (documents.py)."""

from __future__ import annotations

import re
from pathlib import Path

from promptd.documents import DOCUMENT_EXTENSIONS
from promptd.faces.dify.files import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

FORM = (Path(__file__).parents[2] / "console" / "src" / "form.ts").read_text()


def test_the_playground_classifies_files_by_the_servers_extensions() -> None:
    block = re.search(r"export const EXTENSIONS[^=]*= \{(.*?)\n\};", FORM, re.S)
    assert block, "EXTENSIONS is missing from console/src/form.ts"
    entries = re.findall(r"(\w+): \[(.*?)\]", block[1])
    lists = {name: set(re.findall(r'"([a-z0-9]+)"', items)) for name, items in entries}
    assert lists == {
        "image": IMAGE_EXTENSIONS,
        "audio": AUDIO_EXTENSIONS,
        "video": VIDEO_EXTENSIONS,
        "document": DOCUMENT_EXTENSIONS,
    }
