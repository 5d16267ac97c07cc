#!/usr/bin/env bash
# Regenerate tests/data/ (the real text the tests read) from Debian packages, as
# tests/data/README.md describes it. Maintainers only: the tests read the committed
# files and never run this script.
#
#   bash tests/tools/make_test_data.sh            # from the repository root, as root
#
# Needs (installed here when missing, as root): diatheke, sword-text-kjv,
# sword-text-web, sword-text-sparv, fortunes-de; and the Moses tokenizer scripts
# (MOSES: a directory holding scripts/tokenizer/ and scripts/share/ of
# moses-smt/mosesdecoder at commit 34452895f350bf097b21ee514a529a1dc542243c; they are
# run, never copied into the repository). The package versions the committed files
# were made from are in tests/data/README.md; other versions may give other text,
# and then every figure the tests assert must be recounted.
set -euo pipefail
cd "$(dirname "$0")/../.."
MOSES=${MOSES:-/tmp/moses}
PKGS=(diatheke sword-text-kjv sword-text-web sword-text-sparv fortunes-de)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi
[ -f "$MOSES/scripts/tokenizer/tokenizer.perl" ] || { echo "no Moses tokenizer under MOSES=$MOSES" >&2; exit 2; }
for p in "${PKGS[@]}"; do echo "$p $(dpkg-query -W -f '${Version}' "$p")"; done
D=tests/data
mkdir -p $D/bible $D/kjv-lm $D/german

python3 - "$D" <<'PY'
import collections, gzip, re, subprocess, sys
D = sys.argv[1]
# diatheke's plain output: "Book C:V: text", poetry continues on the next lines, a blank
# line ends the verse; a heading (Psalm titles) stands on its own line before the key.
KEY = re.compile(r'^\s*((?:I{1,3} )?[A-Z][A-Za-z ]*?) (\d+):(\d+): ?(.*)$')

def verses(module, rng, opts=""):
    cmd = ["diatheke", "-b", module, "-f", "plain"] + (["-o", opts] if opts else []) + ["-k", rng]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    vs, cur = {}, None
    for line in out.split("\n"):
        m = KEY.match(line)
        if m:
            cur = [m.group(4)]
            vs[f"{m.group(1)} {m.group(2)}:{m.group(3)}"] = cur
        elif cur is not None and not line.strip():
            cur = None
        elif cur is not None:
            cur.append(line)
    return {k: " ".join(" ".join(p).split()) for k, p in vs.items()}

def clean_kjv(t):        # the 1611 paragraph marks are layout, not text
    return " ".join(t.replace("\u00b6", " ").split())

def clean_web(t):        # footnotes shown (-o f) and cut out: no words glued where one was
    t = re.sub(r"\s*\[\d+:\d+[^\]]*\]", " ", t)
    t = re.sub(r" ([,.;:!?])", r"\1", " ".join(t.split()))
    return re.sub(r"([,;:])(?=[A-Za-z\u201c\u2018])", r"\1 ", t)

def clean_rv(t):         # the module's Strong's numbers, shown even without -o n
    return " ".join(re.sub(r"<[GH]\d+>", " ", t).split())

def write_gz(path, lines):
    with open(path, "wb") as f:   # mtime 0, no name: the same bytes every run
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as g:
            g.write("".join(l + "\n" for l in lines).encode("utf-8"))

# ---- bible/: the New Testament, verse-aligned in three translations ----------------
NT = "Matt 1:1-Rev 22:21"
kjv = verses("engKJV2006eb", NT)
web = verses("engWEB2015eb", NT, "f")
rv = verses("spaRV1909eb", NT)
keys = [k for k in kjv if k in web and k in rv]
keys = [k for k in keys if clean_kjv(kjv[k]) and clean_web(web[k]) and clean_rv(rv[k])]
sets = {"kjv": [clean_kjv(kjv[k]) for k in keys], "web": [clean_web(web[k]) for k in keys],
        "rv": [clean_rv(rv[k]) for k in keys]}
for name, lines in sets.items():
    write_gz(f"{D}/bible/valid.{name}.gz", [l for i, l in enumerate(lines, 1) if i % 7 == 0])
    write_gz(f"{D}/bible/train.{name}.gz", [l for i, l in enumerate(lines, 1) if i % 7 != 0])
print(f"bible: {len(keys)} verses of {len(kjv)} (KJV), {len(web)} (WEB), {len(rv)} (RV)")

# ---- kjv-lm/: the Old Testament of the KJV, the way PTB is written ------------------
def ptb(t):
    t = t.replace("\u00b6", " ").replace("\u2019", "'").lower()
    t = re.sub(r"'s\b", " 's", t)
    t = re.sub(r"[^a-z0-9' ]", " ", t)
    t = re.sub(r"(?<![a-z])'(?!s\b)|(?<=[a-z])'(?![a-z])", " ", t)
    t = re.sub(r"[0-9]+", "N", t)
    return " ".join(t.split())

ot = [ptb(t) for t in verses("engKJV2006eb", "Gen 1:1-Mal 4:6").values()]
split = {"train": [l for i, l in enumerate(ot, 1) if i % 20 not in (0, 10)],
         "valid": [l for i, l in enumerate(ot, 1) if i % 20 == 10],
         "test": [l for i, l in enumerate(ot, 1) if i % 20 == 0]}
counts = collections.Counter(w for l in split["train"] for w in l.split())
keep = {w for w, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0]))[:3999]}  # + <unk>: 4,000 types
for name, lines in split.items():
    write_gz(f"{D}/kjv-lm/{name}.txt.gz", [" ".join(w if w in keep else "<unk>" for w in l.split()) for l in lines])
print(f"kjv-lm: {len(ot)} verses, {len(counts)} train types, 3999 kept")

# ---- german/: the first 2,500 quotations of fortunes-de's zitate, one a line --------
text = open("/usr/share/games/fortunes/de/zitate", encoding="utf-8").read()
quotes = []
for cookie in text.split("\n%\n"):
    body = [l for l in cookie.split("\n") if not l.lstrip().startswith("-- ")]
    q = " ".join(" ".join(body).split())
    if q:
        quotes.append(q)
write_gz(f"{D}/german/zitate.gz", quotes[:2500])
print(f"german: 2500 of {len(quotes)} quotations")
PY

# the Spanish validation set as Moses tokenizes and lowercases it (multi-bleu.perl input)
zcat $D/bible/valid.rv.gz | perl "$MOSES/scripts/tokenizer/normalize-punctuation.perl" -l es |
    perl "$MOSES/scripts/tokenizer/tokenizer.perl" -q -l es -threads 1 |
    perl "$MOSES/scripts/tokenizer/lowercase.perl" | gzip -9n >$D/bible/valid.rv.tok.gz
ls -l $D/*/
