#!/bin/sh
# Wire pam-auth-update profiles into the PAM stacks (CP-ACC-04), as Debian does it:
# pam-auth-update --package --enable, run only when a line of a profile is missing
# from its /etc/pam.d/common-* file. With --check, a dry run. Run by campus_accounts
# (tasks/passwords.yml).
#
#   campus-pam-profiles.sh [--check] PROFILE...
#
# The PAM stack is what lets anyone log in: before it is rewritten, every module the
# profiles name must exist, and after, every line must be there, or the run fails and
# says which (pam-auth-update leaves files with local changes alone, and exits 0).
# Prints the missing lines (or "would" add them), then "changed" or "ok".
set -eu
configs=${CAMPUS_PAM_CONFIGS:-/usr/share/pam-configs}
pamd=${CAMPUS_PAM_D:-/etc/pam.d}
modules=${CAMPUS_PAM_MODULES:-/lib/*/security /usr/lib/*/security}
check=no
if [ "${1:-}" = --check ]; then
    check=yes
    shift
fi

# "common-TYPE: LINE" for each line of a profile (its Auth:, Account:, Password: and
# Session: fields) that its common-TYPE file lacks; whitespace does not count.
missing() {
    for profile in "$@"; do
        if [ ! -r "$configs/$profile" ]; then
            echo "$configs/$profile: no such profile"
            continue
        fi
        awk -v pamd="$pamd" '
            function norm(s) { gsub(/[ \t]+/, " ", s); sub(/^ /, "", s); sub(/ $/, "", s); return s }
            /^(Auth|Account|Password|Session):[ \t]*$/ { type = tolower(substr($0, 1, index($0, ":") - 1)); next }
            /^[^ \t]/ { type = ""; next }
            type != "" && NF {
                line = norm($0)
                file = pamd "/common-" type
                if (!(file in read)) {
                    read[file] = 1
                    while ((getline have < file) > 0) {
                        have = norm(have)
                        if (substr(have, 1, length(type) + 1) == type " ")
                            stack[file, substr(have, length(type) + 2)] = 1
                    }
                    close(file)
                }
                if (!((file, line) in stack)) print "common-" type ": " line
            }
        ' "$configs/$profile"
    done
}

# The PAM modules the profiles name (pam_faillock.so ...), for the existence check.
named_modules() {
    for profile in "$@"; do
        awk '/^[ \t]/ { for (i = 1; i <= NF; i++) if ($i ~ /^pam_[a-z_]+\.so$/) print $i }' \
            "$configs/$profile"
    done | sort -u
}

gone=$(missing "$@")
if [ -z "$gone" ]; then
    echo ok
    exit 0
fi
if [ "$check" = yes ]; then
    printf '%s\n' "$gone" | sed 's/^/would add /'
    echo changed
    exit 0
fi
for module in $(named_modules "$@"); do
    found=no
    for dir in $modules; do
        [ -e "$dir/$module" ] && found=yes
    done
    if [ "$found" = no ]; then
        echo "campus-pam-profiles: no $module in $modules; the PAM stacks are left as they were" >&2
        exit 1
    fi
done
DEBIAN_FRONTEND=noninteractive pam-auth-update --package --enable "$@"
still=$(missing "$@")
if [ -n "$still" ]; then
    echo "campus-pam-profiles: pam-auth-update left these lines out:" >&2
    printf '%s\n' "$still" >&2
    echo "(local changes in $pamd/common-*? review them, then run pam-auth-update --force)" >&2
    exit 1
fi
printf '%s\n' "$gone" | sed 's/^/added /'
echo changed
