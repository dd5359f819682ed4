//! io-wq: the kernel threads that carry out a ring's I/O that blocks (every `RWF_DSYNC` write,
//! buffered I/O that misses the page cache), and the CPUs they may run on.
//!
//! Hazard: io-wq belongs to the *thread* that submits, not to the ring, and exists only once
//! that thread has submitted something; [`Ring::set_io_worker_cpus`] therefore primes it with a
//! `NOP` and must run on the worker thread, before any I/O.

use io_uring::opcode;

use super::ring::Ring;
use super::RingError;

/// `user_data` of the `NOP` that creates the submitting thread's io-wq (never an op index).
const NOP_USER_DATA: u64 = u64::MAX;

impl Ring {
    /// Restricts io_uring's async worker threads (io-wq: they carry out I/O that blocks, such
    /// as every `RWF_DSYNC` write) to `cpus`. By default they inherit the creating thread's
    /// pinning, so a busy-polling worker pinned to one core would starve its own I/O.
    ///
    /// io-wq belongs to the *calling thread* and exists only once that thread has submitted
    /// to a ring (the kernel answers `EINVAL` before): call this from the thread that will
    /// submit, before anything is in flight; it submits one `NOP` first.
    pub fn set_io_worker_cpus(&mut self, cpus: &[usize]) -> Result<(), RingError> {
        self.prime_io_worker()?;
        // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &cpu in cpus {
            // CPU_SET indexes a fixed bitmap; larger CPU numbers are skipped.
            if cpu < libc::CPU_SETSIZE as usize {
                // SAFETY: `cpu` is below CPU_SETSIZE, so the bit is inside `set`.
                unsafe { libc::CPU_SET(cpu, &mut set) };
            }
        }
        self.ring
            .submitter()
            .register_iowq_aff(&set)
            .map_err(RingError::IoWorkerAffinity)
    }

    /// Submits one `NOP` and waits for it, so that the calling thread has its io_uring task
    /// context and io-wq. Only with nothing in flight (its completion is consumed here).
    fn prime_io_worker(&mut self) -> Result<(), RingError> {
        assert_eq!(self.in_flight(), 0, "prime the ring before any I/O");
        self.enable()?;
        let nop = opcode::Nop::new().build().user_data(NOP_USER_DATA);
        // SAFETY: a NOP references no memory.
        let pushed = unsafe { self.ring.submission().push(&nop) };
        pushed.expect("nothing is in flight, so the submission queue has room");
        self.ring
            .submitter()
            .submit_and_wait(1)
            .map_err(RingError::Enter)?;
        for cqe in self.ring.completion() {
            assert_eq!(cqe.user_data(), NOP_USER_DATA, "only the NOP was in flight");
        }
        Ok(())
    }
}
