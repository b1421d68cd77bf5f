package steal

// Stale reports whether a report (running, or a result) made with epoch
// reported must be ignored by an owner whose record of the task holds epoch
// current. Only the owner moves a task's epoch, and every move (a grant, a
// re-queue) changes it, so any report not made with the current epoch comes
// from an assignment the owner has since withdrawn.
func Stale(current, reported uint64) bool {
	return reported != current
}
