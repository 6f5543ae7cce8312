//! Process-wide tuning for the kernels, for binaries to call first thing in `main`.

/// mimalloc's `purge_delay` option (the same index in mimalloc v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets the CPU runtime of this process up for the kernels on small machines, unless the user
/// set each variable: `RAYON_NUM_THREADS` to the number of cores (the pool the kernels split
/// their work over; candle would otherwise count the cores again on every matrix product),
/// `CANDLE_NUM_THREADS` to 1 (the heavy work runs in the kernels; candle's own threads for the
/// light remaining ops only competed with them: hrnet_w18_small 128² training step 79 → 72 ms),
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` to 200 (candle's workers otherwise spin long while waiting
/// for each other), and mimalloc's purge delay to "never" unless `MIMALLOC_PURGE_DELAY` is set
/// (freed pages are reused instead of faulted in fresh: 13 600 → 400 page faults in 5 s of
/// training steps; harmless when mimalloc is not the global allocator).
///
/// It changes the whole process, so only binaries call it (the `ikd` command, `cargo xtask`,
/// the benches), first thing in `main`, before any thread is started; they use mimalloc as
/// their global allocator.
///
/// ```
/// ikd_kernels::tune_process();
/// assert!(std::env::var("RAYON_NUM_THREADS").is_ok());
/// ```
pub fn tune_process() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "200");
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        keep_freed_pages();
    }
}

/// Tells mimalloc never to purge freed memory (`purge_delay = -1`). Its environment variable
/// `MIMALLOC_PURGE_DELAY` is read when the process starts, too early to set from `main`.
#[allow(unsafe_code)]
fn keep_freed_pages() {
    // SAFETY: sets one of mimalloc's integer options, which mimalloc allows at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    #[test]
    #[allow(unsafe_code)]
    fn tuning_turns_mimalloc_purging_off() {
        std::env::remove_var("MIMALLOC_PURGE_DELAY");
        let preset = std::env::var("CANDLE_NUM_THREADS").ok();
        super::tune_process();
        // SAFETY: reads one of mimalloc's integer options.
        let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, -1);
        let threads = std::env::var("CANDLE_NUM_THREADS").ok();
        assert_eq!(threads.as_deref(), Some(preset.as_deref().unwrap_or("1")));
    }
}
