#!/usr/bin/env bash
# Builds a crm release into target/dist/:
#   crm-VERSION-x86_64-unknown-linux-musl.tar.gz   static binary + release.json, signed
#                                                  (zipsign, ed25519; what `crm upgrade` takes)
#   manifest.json                                  the release source `[upgrade] url` points at
#   crm_VERSION-1_amd64.deb                        Debian package (cargo-deb)
#   SHA256SUMS
# Needs: rustup, Debian's musl-tools (musl-gcc, for aws-lc-sys), zipsign and cargo-deb
# (installed with `cargo install --locked` when missing), and the signing key:
# $CRM_SIGNING_KEY (default ~/.config/crm/release-signing.key, 64 bytes: secret + public,
# the format `zipsign gen-key` writes). Its public half is packaging/release-key.pub,
# built into every crm; a new key means publishing a crm built with the new .pub first.
# A trial run on a machine without the release key: CRM_SIGNING_KEY=/tmp/k
# CRM_SIGNING_PUB=/tmp/k.pub (from `zipsign gen-key /tmp/k /tmp/k.pub`); the result is
# marked as a trial, since no released crm accepts archives signed with that key.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-musl
KEY=${CRM_SIGNING_KEY:-$HOME/.config/crm/release-signing.key}
PUB=${CRM_SIGNING_PUB:-packaging/release-key.pub}
DIST=target/dist
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
NAME="crm-$VERSION-$TARGET.tar.gz"

[ -r "$KEY" ] || { echo "no signing key at $KEY (set CRM_SIGNING_KEY)" >&2; exit 1; }
[ -r "$PUB" ] || { echo "no public key at $PUB" >&2; exit 1; }
if ! cmp -s "$PUB" packaging/release-key.pub; then
    echo "TRIAL RUN: signing with a key crm does not trust; do not publish $DIST" >&2
fi
command -v musl-gcc >/dev/null || { echo "musl-gcc missing: sudo apt install musl-tools" >&2; exit 1; }
command -v zipsign >/dev/null || cargo install --locked zipsign
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
rustup target add "$TARGET"

echo "== static build"
cargo build --release --locked --target "$TARGET" --bin crm
BIN="target/$TARGET/release/crm"
# A static-pie binary makes glibc's ldd say "statically linked" and succeed: look for
# shared-library dependencies in the dynamic section instead.
if readelf -d "$BIN" | grep -q '(NEEDED)'; then echo "$BIN is not static" >&2; exit 1; fi
[ "$("$BIN" --version)" = "crm $VERSION" ] || { echo "version mismatch" >&2; exit 1; }

rm -rf "$DIST" && mkdir -p "$DIST"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

echo "== signed release archive"
cp "$BIN" "$STAGE/crm"
printf '{"version":"%s","target":"%s"}\n' "$VERSION" "$TARGET" > "$STAGE/release.json"
tar -C "$STAGE" -czf "$STAGE/$NAME" crm release.json
# The signature covers the archive AND its file name (the context `crm upgrade` checks).
# zipsign 0.2 refuses to write a new -o file unless --force is given (DIST is emptied above).
zipsign sign tar --force --context "$NAME" -o "$DIST/$NAME" "$STAGE/$NAME" "$KEY"
chmod 0644 "$DIST/$NAME"
zipsign verify tar --context "$NAME" "$DIST/$NAME" "$PUB"

cat > "$DIST/manifest.json" <<JSON
{
  "schema": 1,
  "releases": [
    {
      "version": "$VERSION",
      "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
      "assets": [
        { "name": "$NAME", "url": "$NAME", "digest": "sha256:$(sha256sum "$DIST/$NAME" | cut -d' ' -f1)" }
      ]
    }
  ]
}
JSON

echo "== Debian package"
# The package's unit runs /usr/bin/crm; the default config is the one `crm install` writes.
DEBSRC=target/dist-deb
rm -rf "$DEBSRC" && mkdir -p "$DEBSRC"
sed 's#/usr/local/bin/crm#/usr/bin/crm#' systemd/crm.service > "$DEBSRC/crm.service"
"$BIN" install --root "$STAGE/root" >/dev/null
cp "$STAGE/root/etc/crm/crm.toml" "$DEBSRC/crm.toml"
# cargo-deb installs crm.sysusers from the unit-scripts folder as usr/lib/sysusers.d/crm.conf.
cp "$STAGE/root/usr/lib/sysusers.d/crm.conf" "$DEBSRC/crm.sysusers"
# The UDP buffer limits for the SIP server (the same file `crm install` writes).
cp "$STAGE/root/usr/lib/sysctl.d/60-crm.conf" "$DEBSRC/60-crm.conf"
cargo deb --no-build --target "$TARGET" --output "$DIST/"

(cd "$DIST" && sha256sum -- *.tar.gz *.deb manifest.json > SHA256SUMS)
echo "== done"
ls -l "$DIST"
