//! EAL initialisation (once per process), the lcore map, and scoped launch of one job
//! per worker lcore.

use super::{last_error, DpdkError};
use std::any::Any;
use std::ffi::{c_char, c_int, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

static EAL_CLAIMED: AtomicBool = AtomicBool::new(false);

/// The initialised EAL. Dropping the last `Arc` runs `rte_eal_cleanup`; every DPDK
/// object palisade creates holds one, so cleanup comes last.
#[derive(Debug)]
pub struct Eal {
    main_lcore: u32,
    workers: Vec<u32>,
    tsc_hz: u64,
}

impl Eal {
    /// Initialises EAL with `args` (without the program name, which is prepended).
    /// Can succeed once per process; a second call fails with `EalAlreadyInitialised`.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Arc<Eal>, DpdkError> {
        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("palisade").expect("literal has no NUL"));
        for a in args {
            owned.push(CString::new(a.as_ref()).map_err(|_| DpdkError::BadArgument(a.as_ref().to_owned()))?);
        }
        if EAL_CLAIMED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalAlreadyInitialised);
        }
        // EAL may keep pointers into argv (and permutes it), so argv lives forever.
        let argv: &'static mut [*mut c_char] =
            Vec::leak(owned.into_iter().map(CString::into_raw).collect::<Vec<_>>());
        let joined = args.iter().map(|a| a.as_ref()).collect::<Vec<_>>().join(" ");
        // SAFETY: argv holds argv.len() valid, NUL-terminated, leaked (so 'static)
        // strings; EAL is initialised at most once (guarded by EAL_CLAIMED).
        let rc = unsafe { dpdk_sys::rte_eal_init(argv.len() as c_int, argv.as_mut_ptr()) };
        if rc < 0 {
            // SAFETY: reads this thread's rte_errno.
            let errno = unsafe { dpdk_sys::palisade_errno() };
            if errno == libc::ENODEV {
                // Device creation failed after EAL made its runtime directory for our
                // prefix; nothing else uses it.
                remove_runtime_dir();
            }
            return Err(DpdkError::EalInit { reason: last_error(), errno, args: joined });
        }
        // SAFETY: EAL is initialised; these read its lcore configuration.
        let main_lcore = unsafe { dpdk_sys::rte_get_main_lcore() };
        let mut workers = Vec::new();
        // SAFETY: as above; rte_get_next_lcore walks enabled lcores, returning
        // RTE_MAX_LCORE at the end.
        let mut l = unsafe { dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while l < dpdk_sys::RTE_MAX_LCORE {
            workers.push(l);
            // SAFETY: as above.
            l = unsafe { dpdk_sys::rte_get_next_lcore(l, 1, 0) };
        }
        // SAFETY: EAL is initialised; the TSC frequency was calibrated at init.
        let tsc_hz = unsafe { dpdk_sys::palisade_tsc_hz() };
        Ok(Arc::new(Eal { main_lcore, workers, tsc_hz }))
    }

    /// The lcore the calling (initialising) thread runs on.
    pub fn main_lcore(&self) -> u32 {
        self.main_lcore
    }

    /// The enabled lcores other than the main one, in ascending order.
    pub fn worker_lcores(&self) -> &[u32] {
        &self.workers
    }

    /// TSC ticks per second.
    pub fn tsc_hz(&self) -> u64 {
        self.tsc_hz
    }

    /// The CPU an lcore is pinned to (its first CPU), if EAL knows it.
    pub fn lcore_cpu(&self, lcore: u32) -> Option<u32> {
        // SAFETY: EAL is initialised; returns -1 for an invalid lcore.
        let cpu = unsafe { dpdk_sys::rte_lcore_to_cpu_id(lcore as c_int) };
        u32::try_from(cpu).ok()
    }

    /// Runs `jobs[i]` on worker lcore `worker_lcores()[i]` and `main` on the calling
    /// thread, concurrently, and returns when all have finished: like
    /// `std::thread::scope`, so jobs may borrow from the caller. At most one job per
    /// worker lcore. A panicking job is reported as `WorkerPanicked`.
    pub fn run_on_workers<'s, R: Send, T>(
        &self,
        jobs: Vec<Box<dyn FnOnce() -> R + Send + 's>>,
        main: impl FnOnce() -> T,
    ) -> Result<(Vec<R>, T), DpdkError> {
        assert!(jobs.len() <= self.workers.len(), "more jobs than worker lcores");
        let mut slots: Vec<Slot<'s, R>> =
            jobs.into_iter().map(|job| Slot { job: Some(job), result: None }).collect();
        let mut launched = Launched { lcores: Vec::with_capacity(slots.len()) };
        let mut launch_error = None;
        for (slot, &lcore) in slots.iter_mut().zip(&self.workers) {
            let arg = slot as *mut Slot<'s, R> as *mut c_void;
            // SAFETY: `arg` points to a Slot that outlives the job: `launched` waits for
            // every launched lcore before `slots` is dropped or read, on every path
            // (including unwinding from `main`), and no one else touches the slot
            // meanwhile. The trampoline matches lcore_function_t.
            let rc = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline::<R>), arg, lcore) };
            if rc != 0 {
                launch_error = Some(DpdkError::Launch { lcore, reason: super::strerror(rc) });
                break;
            }
            launched.lcores.push(lcore);
        }
        let main_result = if launch_error.is_none() { Some(main()) } else { None };
        drop(launched); // waits for every launched job
        if let Some(e) = launch_error {
            return Err(e);
        }
        let mut results = Vec::with_capacity(slots.len());
        for (slot, &lcore) in slots.into_iter().zip(&self.workers) {
            match slot.result {
                Some(Ok(r)) => results.push(r),
                Some(Err(p)) => {
                    return Err(DpdkError::WorkerPanicked { lcore, message: panic_message(&*p) })
                }
                None => return Err(DpdkError::WorkerPanicked { lcore, message: "job did not run".into() }),
            }
        }
        Ok((results, main_result.expect("main ran when every launch succeeded")))
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: the last owner of the EAL is going away; every object holding an
        // Arc<Eal> (ports, pools, rings) is already gone, and no lcore job runs.
        unsafe { dpdk_sys::rte_eal_cleanup() };
        // EAL leaves its per-prefix runtime directory behind; palisade runs as a
        // primary with its own prefix, so nobody else uses it.
        remove_runtime_dir();
    }
}

/// Removes EAL's runtime directory (`/var/run/dpdk/<prefix>`), if it was made.
fn remove_runtime_dir() {
    // SAFETY: returns a pointer to EAL's static path buffer (empty before it is set).
    let dir = unsafe { std::ffi::CStr::from_ptr(dpdk_sys::rte_eal_get_runtime_dir()) }.to_string_lossy().into_owned();
    if !dir.is_empty() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

struct Slot<'s, R> {
    job: Option<Box<dyn FnOnce() -> R + Send + 's>>,
    result: Option<std::thread::Result<R>>,
}

/// Waits, on drop, for every lcore launched so far.
struct Launched {
    lcores: Vec<u32>,
}

impl Drop for Launched {
    fn drop(&mut self) {
        for &l in &self.lcores {
            // SAFETY: waiting for a launched lcore has no preconditions.
            unsafe { dpdk_sys::rte_eal_wait_lcore(l) };
        }
    }
}

unsafe extern "C" fn trampoline<R>(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `*mut Slot<R>` passed by run_on_workers, exclusively ours
    // until run_on_workers has waited for this lcore.
    let slot = unsafe { &mut *(arg as *mut Slot<'_, R>) };
    if let Some(job) = slot.job.take() {
        slot.result = Some(catch_unwind(AssertUnwindSafe(job)));
    }
    0
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
