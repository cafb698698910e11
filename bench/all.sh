#!/usr/bin/env bash
# make bench: every benchmark in one run, each printing its figures as
# ratios against a peer measured in the same run; then the ratio lines of
# all of them together (also in build/bench/summary.txt).
#
#   bench/all.sh BUILD_DIR [NAME...]   NAME: nbd iscsi vhost hostd (default all)
set -euo pipefail
BUILD=${1:?usage: $0 BUILD_DIR [nbd|iscsi|vhost|hostd ...]}
shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(cd "$(dirname "$BUILD")" && pwd)/bench
mkdir -p "$OUT"
names=("$@")
((${#names[@]})) || names=(nbd iscsi vhost hostd)
summary=$OUT/summary.txt
: >"$summary"
rc=0
for n in "${names[@]}"; do
	case $n in
	nbd) script=$ROOT/bench/run.sh ;;
	*) script=$ROOT/bench/$n.sh ;;
	esac
	if [[ ! -x $script ]]; then
		echo "bench: $n: no $script, skipped" | tee -a "$summary"
		continue
	fi
	echo "=== bench $n"
	if ! "$script" "$BUILD" 2>&1 | tee "$OUT/$n.out"; then
		echo "bench: $n FAILED (see $OUT/$n.out)" | tee -a "$summary"
		rc=1
	fi
	grep -E '^ratio ' "$OUT/$n.out" | sed "s/^/[$n] /" >>"$summary" || true
done
echo
echo "=== summary ($summary)"
cat "$summary"
exit $rc
