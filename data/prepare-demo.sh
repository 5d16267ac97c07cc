#!/usr/bin/env bash
# The demo corpus: the King James Bible from Debian's bible-kjv package (real English text,
# installable without any other download), as one verse per line, lowercased, punctuation
# split off, verse references dropped. Every 50th verse goes to test.txt, every 50th + 25 to
# valid.txt, the rest to train.txt (about 760k training words).
#   data/prepare-demo.sh [OUT]   (default build/demo/data)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/demo/data}
if ! command -v bible >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing the Debian package bible-kjv (the demo corpus)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q bible-kjv >/tmp/moe-apt.log 2>&1 ||
            { apt-get update -q >>/tmp/moe-apt.log 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bible-kjv >>/tmp/moe-apt.log 2>&1; } ||
            { echo "prepare-demo: error: could not install bible-kjv (see /tmp/moe-apt.log)" >&2; exit 2; }
    else
        echo "prepare-demo: error: the demo corpus needs the Debian package bible-kjv; run as root:" >&2
        echo "  apt-get install -y bible-kjv" >&2
        exit 2
    fi
fi
mkdir -p "$out"
bible -f 'Gen1:1-Rev22:21' | sed -e 's/^[^ ]* //' | tr 'A-Z' 'a-z' |
    sed -e 's/\([][(),;:.!?]\)/ \1 /g' -e "s/'s / 's /g" -e 's/  */ /g' -e 's/^ //' -e 's/ $//' |
    awk -v out="$out" '{ if (NR % 50 == 0) print > (out "/test.txt"); else if (NR % 50 == 25) print > (out "/valid.txt"); else print > (out "/train.txt") }'
wc -lw "$out"/train.txt "$out"/valid.txt "$out"/test.txt
