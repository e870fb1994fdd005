#!/usr/bin/env bash
# Copies the front-end files kbaudit serves itself (no CDN: /docs and /redoc work offline)
# from the npm registry, at pinned versions, into src/kbaudit/api/static/vendor/.
# Run it to change a version; the copied files are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
SWAGGER_UI=5.35.0
REDOC=2.5.2
target=src/kbaudit/api/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$SWAGGER_UI" "redoc@$REDOC" >/dev/null)
mkdir -p "$work/swagger" "$work/redoc" "$target"
tar xzf "$work/swagger-ui-dist-$SWAGGER_UI.tgz" -C "$work/swagger"
tar xzf "$work/redoc-$REDOC.tgz" -C "$work/redoc"
cp "$work/swagger/package/swagger-ui-bundle.js" "$work/swagger/package/swagger-ui.css" \
  "$work/swagger/package/favicon-32x32.png" "$target/"
cp "$work/swagger/package/LICENSE" "$target/swagger-ui.LICENSE"
# Redoc loads its "by Redocly" logo from a CDN: point it at an empty image served here.
sed 's#https://cdn.redoc.ly/redoc/logo-mini.svg#/static/vendor/blank.svg#' \
  "$work/redoc/package/bundles/redoc.standalone.js" > "$target/redoc.standalone.js"
printf '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\n' > "$target/blank.svg"
cp "$work/redoc/package/LICENSE" "$target/redoc.LICENSE"
echo "swagger-ui-dist $SWAGGER_UI, redoc $REDOC" > "$target/VERSIONS"
