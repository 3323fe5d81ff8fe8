//! Locking that survives a panic: what dockersave keeps behind its locks (progress lines,
//! slots, buffers, a header) is never left half-written by a panicking thread, so a poisoned
//! lock is taken as it is. Owns nothing else.

/// Locks `mutex`, even one a panicking thread left poisoned.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
