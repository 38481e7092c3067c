#!/bin/sh
# Set KEY VALUE settings in login.defs (CP-ACC-04), writing the file only when a value
# differs; with --check, a dry run. Run by campus_accounts (tasks/passwords.yml).
#
#   campus-login-defs.sh [--check] FILE KEY=VALUE...
#
# Every active line of a KEY takes its VALUE (shadow reads the last one; none is left to
# disagree); a KEY without one is added at the end. Prints "set KEY VALUE" (or "would
# set") for each KEY that changes, then "changed" or "ok".
set -eu
check=no
if [ "${1:-}" = --check ]; then
    check=yes
    shift
fi
file=$1
shift
for pair in "$@"; do
    case $pair in
        *[!A-Za-z0-9_=]* | =* | *= | *=*=*) ;;
        *=*) continue ;;
    esac
    echo "campus-login-defs: '$pair' is not KEY=VALUE (letters, digits, _)" >&2
    exit 2
done
if [ ! -r "$file" ]; then
    echo "campus-login-defs: cannot read $file" >&2
    exit 1
fi
# The new text goes beside the file (one rename puts it in place); a dry run writes none.
new=/dev/null
if [ "$check" = no ]; then
    new=$(mktemp "$(dirname -- "$file")/.campus-login-defs.XXXXXX")
    trap 'rm -f -- "$new"' EXIT
fi

# The new text to $new; the KEYs that change, one "KEY VALUE" a line, to stdout.
changes=$(awk -v pairs="$*" -v out="$new" '
BEGIN {
    n = split(pairs, kv, " ")
    for (i = 1; i <= n; i++) {
        eq = index(kv[i], "=")
        order[i] = substr(kv[i], 1, eq - 1)
        want[order[i]] = substr(kv[i], eq + 1)
    }
}
($1 in want) {
    seen[$1] = 1
    if (NF == 2 && $2 == want[$1]) { print > out; next }
    print $1 "\t" want[$1] > out
    changed[$1] = 1
    next
}
{ print > out }
END {
    added = 0
    for (i = 1; i <= n; i++) {
        key = order[i]
        if (key in seen) continue
        if (!added++) print "# Set by campus-provision (CP-ACC-04)." > out
        print key "\t" want[key] > out
        changed[key] = 1
    }
    for (i = 1; i <= n; i++)
        if (order[i] in changed) print order[i] " " want[order[i]]
}
' "$file")

if [ -z "$changes" ]; then
    echo ok
    exit 0
fi
if [ "$check" = yes ]; then
    printf '%s\n' "$changes" | sed 's/^/would set /'
else
    chmod --reference="$file" -- "$new"
    chown --reference="$file" -- "$new"
    mv -f -- "$new" "$file"
    printf '%s\n' "$changes" | sed 's/^/set /'
fi
echo changed
