//! The IKD engine: everything between the crates and the `ikd` command.
//!
//! [Informative Knowledge Distillation for Image Anomaly Segmentation](https://doi.org/10.1016/j.knosys.2022.108846)
//! (Cao et al., Knowledge-Based Systems 2022) trains a student HRNet to imitate a frozen,
//! ImageNet-pretrained teacher on defect-free images; where the two disagree, the image is anomalous.

pub mod checkpoint;
mod distiller;
mod error;
mod evaluate;
mod fsutil;
pub mod init;
pub mod maps;
pub mod optim;
mod predict;
mod progress;
mod teacher;
mod train;
pub mod viz;

pub use distiller::{teacher_weights_file, Backbone, Distiller, StepStats, TeacherWeights};
pub use error::{Error, Result};
pub use evaluate::{evaluate_maps, test_run, DefectMetrics, ImageResult, TestMetrics, TestOptions};
pub use fsutil::{atomic_write, atomic_write_with};
pub use ikd_kernels::KernelPolicy;
pub use predict::{expand_inputs, predict, PredictSummary, Prediction};
pub use teacher::TeacherIdentity;
pub use train::{
    files, parse_device, resolve_backbone, train, LogEntry, TrainConfig, TrainOptions, TrainSummary,
};

/// mimalloc's `purge_delay` option (the same index in mimalloc v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to purge freed memory (`purge_delay = -1`). Its environment variable
/// `MIMALLOC_PURGE_DELAY` is read when the process starts, too early to set from `main`.
/// Harmless when mimalloc is not the global allocator.
#[allow(unsafe_code)]
fn keep_freed_pages() {
    // SAFETY: sets one of mimalloc's integer options, which mimalloc allows at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// Sets the CPU runtime up for HRNet training on small machines, unless the user set each
/// variable: `RAYON_NUM_THREADS` to the number of cores (the pool `ikd_hrnet::kernels` split
/// their work over; candle would otherwise count the cores again on every matrix product),
/// `CANDLE_NUM_THREADS` to 1 (the heavy work runs in the kernels; candle's own threads for the
/// light remaining ops only competed with them: hrnet_w18_small 128² training step 79 → 72 ms),
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` to 200 (candle's workers otherwise spin long while waiting
/// for each other), and mimalloc's purge delay to "never" unless `MIMALLOC_PURGE_DELAY` is set
/// (freed pages are reused instead of faulted in fresh: 13 600 → 400 page faults in 5 s of
/// training steps). Call it first thing in `main`, before any thread is started; the binaries
/// use mimalloc as their global allocator.
///
/// ```
/// ikd::tune_cpu_threads();
/// assert!(std::env::var("RAYON_NUM_THREADS").is_ok());
/// ```
pub fn tune_cpu_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "200");
    }
    // The heavy work runs in ikd-hrnet's kernels on rayon's pool; candle's own threads for the
    // light remaining ops would only compete with them.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    // mimalloc (the binaries' allocator) keeps freed pages instead of returning them to the
    // system, so a training step does not fault in fresh zeroed pages for every buffer.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        keep_freed_pages();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[allow(unsafe_code)]
    fn tuning_turns_mimalloc_purging_off() {
        std::env::remove_var("MIMALLOC_PURGE_DELAY");
        super::tune_cpu_threads();
        // SAFETY: reads one of mimalloc's integer options.
        let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, -1);
        assert_eq!(std::env::var("CANDLE_NUM_THREADS").as_deref(), Ok("1"));
    }
}
