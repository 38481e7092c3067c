"""Check a staged or published campus bundle on the mirror host (python3 stdlib only).

Usage: check_bundle.py DIR SHA256

The controller has verified the campus signature over bundle.json and recorded its
SHA-256; here the host checks that its bundle.json is that very file and that every file
it lists is present with its hash and size, with nothing extra. Prints one line per
problem and exits 1 if there is any.
"""

import hashlib
import json
import os
import sys

MANIFEST = "bundle.json"
SIGNATURE = "bundle.json.sig"


def digest(path):
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def main(root, expected):
    problems = []
    manifest_path = os.path.join(root, MANIFEST)
    if not os.path.isfile(manifest_path):
        return [f"missing: {MANIFEST}"]
    got, _ = digest(manifest_path)
    if got != expected:
        return [f"altered: {MANIFEST} (not the manifest the controller verified)"]
    with open(manifest_path, "rb") as fh:
        doc = json.loads(fh.read().decode("utf-8"))
    wanted = {p["filename"]: (p["sha256"], p["size"]) for p in doc["packages"]}
    wanted.update({f["path"]: (f["sha256"], f["size"]) for f in doc["files"]})
    for rel in sorted(wanted):
        path = os.path.join(root, rel)
        if not os.path.isfile(path):
            problems.append(f"missing: {rel}")
        elif digest(path) != tuple(wanted[rel]):
            problems.append(f"altered: {rel}")
    present = set()
    for base, _dirs, files in os.walk(root):
        for name in files:
            present.add(os.path.relpath(os.path.join(base, name), root))
    for rel in sorted(present - set(wanted) - {MANIFEST, SIGNATURE}):
        problems.append(f"extra: {rel}")
    return problems


if __name__ == "__main__":
    found = main(sys.argv[1], sys.argv[2])
    for line in found:
        print(f"{sys.argv[1]}: {line}")
    if found:
        print(f"{sys.argv[1]}: {len(found)} problems; the bundle is not published")
        sys.exit(1)
    print(f"{sys.argv[1]}: OK")
