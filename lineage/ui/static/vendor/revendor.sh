#!/usr/bin/env bash
# Re-vendor the graph layout library (dagre) from npm into this folder:
#
#   bash lineage/ui/static/vendor/revendor.sh [VERSION]     (default: the version below)
#
# Downloads the package with `npm pack` (npm checks it against the registry's
# integrity hash, and so does this script), keeps the minified browser build and the
# license, and records version, integrity and the file's SHA-256 in VENDOR.json
# (tests/ui checks the shipped file against it). The UI never loads code from a CDN.
set -Eeuo pipefail

PACKAGE=@dagrejs/dagre
VERSION=${1:-3.1.3}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

cd "$TMP"
EXPECTED=$(npm view "$PACKAGE@$VERSION" dist.integrity)
GOT=$(npm pack --json "$PACKAGE@$VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["integrity"])')
[[ "$GOT" == "$EXPECTED" ]] || { echo "integrity mismatch: $GOT != $EXPECTED" >&2; exit 1; }
tar xzf ./*.tgz

# Drop the source-map comment (the map is not shipped; devtools would ask for it) and
# point the license comment at the file shipped next to it.
sed -e '/^\/\/# sourceMappingURL=/d' \
    -e 's/dagre\.min\.js\.LEGAL\.txt/dagre.LICENSE/' \
    package/dist/dagre.min.js > "$HERE/dagre.min.js"
cp package/LICENSE "$HERE/dagre.LICENSE"
SHA=$(sha256sum "$HERE/dagre.min.js" | cut -d' ' -f1)
cat > "$HERE/VENDOR.json" <<JSON
{
  "package": "$PACKAGE",
  "version": "$VERSION",
  "npm_integrity": "$EXPECTED",
  "file": "dagre.min.js",
  "sha256": "$SHA",
  "license": "MIT, see dagre.LICENSE",
  "changes": "source-map comment removed; license comment points to dagre.LICENSE"
}
JSON
echo "vendored $PACKAGE@$VERSION into $HERE"
