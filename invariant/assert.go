package invariant

// TB is the part of testing.TB that Assert uses; *testing.T and *testing.B have it.
// The package does not import testing, so a simulator can run Check outside a test.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

// Assert fails t with r's violations, at most limit of them one by one (all of them
// when limit <= 0) and the count of the rest, logs the counts, and reports whether
// every invariant held.
func (r Report) Assert(t TB, limit int) bool {
	t.Helper()
	for i, v := range r.Violations {
		if limit > 0 && i == limit {
			t.Errorf("and %d more violations", len(r.Violations)-limit)
			break
		}
		t.Errorf("%s", v.Text)
	}
	t.Logf("invariants: %s", r)
	return r.OK()
}
