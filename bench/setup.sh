#!/bin/sh
# Installs the external tools `deno task bench` compares p2p-share against, with apt-get:
#   aria2   (aria2c: the BitTorrent client and the segmented HTTP downloader)
#   curl    (the plain HTTP download)
#   nginx   (the local static server; the bench starts its own on 127.0.0.1 and stops it)
#   openssl (openssl dgst -sha256, the hashing bar for `create`)
# The .torrent, the SHA-1 piece hashes and the BitTorrent tracker are written in Deno by
# bench/external.ts, so no torrent maker or tracker package is needed.
#
# Non-interactive and idempotent: a tool already on the PATH is left alone, and a second run
# installs nothing. Debian's nginx package would start a system nginx on port 80 when installed;
# a temporary policy-rc.d stops that (the bench needs no service, only the binary).
# Needs root (or sudo). Prints what it installed.
set -eu

need=""
command -v aria2c >/dev/null 2>&1 || need="$need aria2"
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v nginx >/dev/null 2>&1 || need="$need nginx"
command -v openssl >/dev/null 2>&1 || need="$need openssl"

if [ -z "$need" ]; then
  echo "bench/setup.sh: nothing to install (aria2c, curl, nginx and openssl are present)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "bench/setup.sh: needs root to install:$need" >&2
    exit 1
  fi
fi

policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
  # 101 = "action forbidden": package scripts then install without starting services.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  made_policy=1
fi
cleanup() { if [ -n "$made_policy" ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086 # $need is a list of package names
$SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null

echo "bench/setup.sh: installed:$need"
for tool in aria2c curl nginx openssl; do
  printf '  %-8s %s\n' "$tool" "$(command -v "$tool" || echo 'still missing')"
done
