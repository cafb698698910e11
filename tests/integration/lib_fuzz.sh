# Helpers for the fuzz_*.sh runners: a short libFuzzer pass with a fixed
# seed and run count (the same inputs every time) over a target that
# `make MODE=fuzz fuzzers` built from tests/fuzz/NAME.c.
#
#   fuzz_setup NAME       sets FUZZ (the binary; fails if it is not built)
#                         and T, a temporary directory removed at exit with
#                         empty seeds/ and corpus/ in it: put seed inputs in
#                         $T/seeds
#   fuzz_run RUNS MAX_LEN [SECS]
#                         runs $FUZZ over $T/corpus and $T/seeds (under
#                         `timeout SECS` when given); on a crash, leak or
#                         timeout prints the log's tail and the inputs that
#                         caused it and exits 1

fuzz_setup() {
	FUZZ_NAME=$1
	local root=${CAIRN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
	# `make MODE=fuzz fuzzers` writes $(BUILD)/fuzz/NAME with BUILD=build/fuzz.
	FUZZ=$root/build/fuzz/$FUZZ_NAME
	[[ -x $FUZZ ]] || FUZZ=$root/build/fuzz/fuzz/$FUZZ_NAME
	if [[ ! -x $FUZZ ]]; then
		echo "FAIL: $FUZZ not built (make MODE=fuzz fuzzers)" >&2
		exit 1
	fi
	T=$(mktemp -d "${TMPDIR:-/tmp}/cairn-$FUZZ_NAME.XXXXXX")
	trap 'rm -rf "$T"' EXIT
	mkdir "$T/seeds" "$T/corpus"
}

fuzz_run() {
	local runs=$1 max_len=$2 secs=${3:-} rc=0 f
	${secs:+timeout "$secs"} "$FUZZ" -runs="$runs" -seed=1 \
		-max_len="$max_len" -artifact_prefix="$T/" \
		"$T/corpus" "$T/seeds" >"$T/fuzz.log" 2>&1 || rc=$?
	if ((rc != 0)); then
		tail -n 60 "$T/fuzz.log"
		for f in "$T"/crash-* "$T"/leak-* "$T"/timeout-*; do
			[[ -e $f ]] && { echo "input $f:"; od -An -tx1 "$f" | head; }
		done
		echo "FAIL: $FUZZ_NAME exited $rc" >&2
		exit 1
	fi
	tail -n 3 "$T/fuzz.log"
	echo "$FUZZ_NAME: $runs runs, no crash"
}
