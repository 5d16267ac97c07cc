#!/usr/bin/env bash
# The suite runs on a user's clone with nothing beside it: no file of tests/, .ci/ or the
# Makefile names the folder beside a clone or the workplace copy of it, nor the variable
# that pointed the tests there; every data file a test names under tests/data exists, and
# tests/data/README.md names the Debian source of every file there.
. "$(dirname "$0")/common.bash"
cd "$ROOT"
# the patterns are written in pieces so that this file does not name them itself
beside='\.\./'shared
workplace=/work/'shared'
var=MOE_'SHARED'
hits=$(grep -rnIE -- "$beside|$workplace|$var" tests .ci Makefile 2>/dev/null)
[ -z "$hits" ] || fail "outside the repository: $hits"
# every tests/data path named by a test is there (a typo would otherwise read nothing)
pre='(tests/data/|data_path\("|testdata_path\("|testdata_plain_copy\("|\$DATA/|^(ref|hyp) @)'
names=$(grep -rhoIE -- "$pre[A-Za-z0-9_./-]+\.(gz|txt)" tests | sed -E "s#^$pre##" | sort -u)
[ -n "$names" ] || fail "found no data paths in the tests"
for n in $names; do
    [ -f "tests/data/$n" ] || fail "a test names tests/data/$n, which is not there"
done
# every file of tests/data is described in its README
for f in $(cd tests/data && find . -type f ! -name README.md | sed 's#^\./##' | sort); do
    dir=${f%%/*}
    grep -q "\`$dir/" tests/data/README.md || fail "tests/data/README.md does not describe $f"
    [ "$(stat -c %s "tests/data/$f")" -lt 2000000 ] || fail "tests/data/$f is 2 MB or more"
done
echo "nothing outside the repository is named; $(echo "$names" | wc -w) data files named by tests, all present"
