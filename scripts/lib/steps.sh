# Step timing shared by .ci/run and scripts/test.sh (sourced, not run).
#   step NAME CMD [ARG ...]   runs CMD, prints and records NAME and its wall seconds
#   steps_table               prints the table of every step recorded so far
# Steps go to the file named by OTPGW_STEPS (made here when unset), so a script
# called by another adds its steps to the caller's table.
if [ -z "${OTPGW_STEPS:-}" ]; then
    OTPGW_STEPS=$(mktemp "${TMPDIR:-/tmp}/otpgw-steps.XXXXXX")
    export OTPGW_STEPS
    OTPGW_STEPS_OWNER=$$
fi

step() {
    local name=$1 start rc=0
    shift
    echo "== step: $name"
    start=$(date +%s)
    "$@" || rc=$?
    local secs=$(($(date +%s) - start))
    # At once too, so a run cut short still shows where its time went.
    echo "== step: $name took ${secs} s (exit $rc)"
    printf '%s\t%s\t%s\n' "$name" "$secs" "$rc" >>"$OTPGW_STEPS"
    return "$rc"
}

steps_table() {
    local total=0 name secs rc
    echo
    echo "| step | seconds | exit |"
    echo "|---|---:|---:|"
    while IFS=$'\t' read -r name secs rc; do
        echo "| $name | $secs | $rc |"
        total=$((total + secs))
    done <"$OTPGW_STEPS"
    echo "| total | $total | |"
}

# The script that made the file prints the table when it ends, failed or not.
if [ "${OTPGW_STEPS_OWNER:-}" = "$$" ]; then
    trap 'steps_table; rm -f "$OTPGW_STEPS"' EXIT
fi
