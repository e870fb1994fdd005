"""The names and version of an export's signed files: shared by the code that writes them
and by ``kbaudit verify``, which must start without loading the server's stack."""

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
VERSION = 1
