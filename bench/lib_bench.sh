# Helpers the bench scripts share. Source it (it is not a benchmark).

# median N...: the median of the numbers given, as separate arguments or
# as words of one (" 1 2 3"), to stdout.
median() {
	# shellcheck disable=SC2048,SC2086 # the words are the numbers
	printf '%s\n' $* | sort -g |
		awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
