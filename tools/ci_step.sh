#!/usr/bin/env bash
# Usage: tools/ci_step.sh STEP COMMAND...  — runs one step of `make test` and prints when it
# started and ended, its wall time and the CPU time of everything it ran (user + system of the
# processes it waited for), and appends the figures to target/ci-steps.tsv for the summary
# `make test` prints at the end (`tools/ci_step.sh --summary`; docs/develop.md "Test time").
set -uo pipefail
if [[ ${1:-} == --summary ]]; then
  awk -F'\t' '{ printf "%-16s %6d s wall %6d s CPU  %s\n", $1, $2, $3 + $4, $5; cpu += $3 + $4 }
    END { printf "%-16s %6s        %6d s CPU = %.1f CPU-minutes\n", "all steps", "", cpu, cpu / 60 }' \
    target/ci-steps.tsv
  exit 0
fi
step=$1; shift
echo "== make $step started $(date -u +%T)"
start=$(date +%s.%N)
"$@"
rc=$?
end=$(date +%s.%N)
# `times`' second line: the user and system time of this shell's waited-for children (run in
# this shell, not a subshell, which would have children of its own).
tmp=$(mktemp)
times >"$tmp"
read -r cu cs < <(sed -n 2p "$tmp" | sed -E 's/([0-9]+)m([0-9.]+)s/\1 \2/g' | awk '{ print $1*60+$2, $3*60+$4 }')
rm -f "$tmp"
wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
status=$([[ $rc == 0 ]] && echo ok || echo "FAILED ($rc)")
printf '== make %s ended %s: %s, %s s wall, %.0f s CPU (%.0f user + %.0f system)\n' \
  "$step" "$(date -u +%T)" "$status" "$wall" "$(awk -v u="$cu" -v s="$cs" 'BEGIN { print u + s }')" "$cu" "$cs"
mkdir -p target
printf '%s\t%s\t%.0f\t%.0f\t%s\n' "$step" "$wall" "$cu" "$cs" "$status" >>target/ci-steps.tsv
exit "$rc"
