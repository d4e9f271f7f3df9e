package limiter

// ParsePriority reads an x-aiquota-priority header value: one digit 1..9, with
// surrounding spaces or tabs allowed. Anything else is not a priority (ok=false),
// and the caller uses its default rather than guessing.
func ParsePriority(v string) (int, bool) {
	i, j := 0, len(v)
	for i < j && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	for j > i && (v[j-1] == ' ' || v[j-1] == '\t') {
		j--
	}
	if j-i != 1 || v[i] < '1' || v[i] > '9' {
		return 0, false
	}
	return int(v[i] - '0'), true
}
