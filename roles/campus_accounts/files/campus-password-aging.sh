#!/bin/sh
# Age the analysts' passwords as the spec says, and keep the admins' locked passwords
# from ageing (CP-ACC-04); chage runs only for an account whose values differ. With
# --check, a dry run. Run by campus_accounts (tasks/passwords.yml).
#
#   campus-password-aging.sh [--check] MIN MAX WARN ANALYST... [-- ADMIN...]
#
# An admin logs in with a key and has no password, but pam_unix still refuses an
# account whose password has expired: SSH and sudo with it. So an admin's maximum age
# is none (chage -M -1), whatever login.defs gave the account when it was made.
# Prints what it changes (or "would"), then "changed" or "ok".
set -eu
check=no
if [ "${1:-}" = --check ]; then
    check=yes
    shift
fi
min=$1 max=$2 warn=$3
shift 3
for n in "$min" "$max" "$warn"; do
    case $n in
        '' | *[!0-9]*)
            echo "campus-password-aging: '$n' is not a number of days" >&2
            exit 2 ;;
    esac
done
would=""
[ "$check" = yes ] && would="would "
kind=analyst
changed=no
missing=""
for user in "$@"; do
    if [ "$user" = -- ]; then
        kind=admin
        continue
    fi
    entry=$(getent shadow "$user") || entry=""
    if [ -z "$entry" ]; then
        # In a dry run an analyst not made yet is one the real run makes, then ages.
        if [ "$check" = yes ]; then
            [ "$kind" = analyst ] && echo "would age $user (no account yet)" && changed=yes
            continue
        fi
        missing="$missing $user"
        continue
    fi
    had=$(printf '%s\n' "$entry" | cut -d: -f4-6)
    if [ "$kind" = analyst ]; then
        [ "$had" = "$min:$max:$warn" ] && continue
        echo "${would}age $user: min:max:warn $had -> $min:$max:$warn"
        [ "$check" = yes ] || chage -m "$min" -M "$max" -W "$warn" -- "$user"
    else
        had_max=$(printf '%s\n' "$had" | cut -d: -f2)
        case $had_max in '' | -1) continue ;; esac
        [ "$had_max" -ge 99999 ] 2>/dev/null && continue
        echo "${would}stop admin $user's locked password from ageing (max $had_max days)"
        [ "$check" = yes ] || chage -M -1 -- "$user"
    fi
    changed=yes
done
if [ -n "$missing" ]; then
    echo "campus-password-aging: no account for:$missing" >&2
    exit 1
fi
[ "$changed" = yes ] && echo changed || echo ok
