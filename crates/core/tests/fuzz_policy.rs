//! Fuzzing the policy parser with mutated seeds for a bounded time
//! (`SETA_FUZZ_SECS`, default 20; `make fuzz` runs longer): no input may
//! panic, and each input's time and peak memory stay within a bound
//! proportional to its size. A failure prints the seed and step to replay.
use seta_core::policy::fuzz::{corpus, mutate, Rng};
use seta_core::policy::parse::parse_file;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts live and peak heap bytes (this test binary runs one test).
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the same layout
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` with this layout
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Bounds per input of `len` bytes (debug build, a shared 2-core machine).
fn time_bound(len: usize) -> Duration {
    Duration::from_millis(250) + Duration::from_micros(20 * len as u64)
}
fn memory_bound(len: usize) -> usize {
    (4 << 20) + 400 * len
}

#[test]
fn fuzz_policy_parser_never_panics_and_stays_within_bounds() {
    let secs: u64 = std::env::var("SETA_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("SETA_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let seeds = corpus();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut rng = Rng::new(seed);
    let (mut n, mut accepted, mut worst_time, mut worst_mem) = (0u64, 0u64, 0f64, 0f64);
    // inputs grow by mutating earlier mutants, up to 64 KiB
    let mut pool: Vec<String> = seeds.iter().map(|(_, t)| t.to_string()).collect();
    while Instant::now() < deadline {
        let base = pool[rng.below(pool.len())].clone();
        let input = mutate(&base, &seeds, &mut rng, 64 << 10);
        n += 1;
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let t = Instant::now();
        let r = std::panic::catch_unwind(|| parse_file(&input).map(|d| d.len()));
        let took = t.elapsed();
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        let replay = || {
            format!(
                "seed {seed}, input {n} ({} bytes): {:?}",
                input.len(),
                input.chars().take(300).collect::<String>()
            )
        };
        let r = r.unwrap_or_else(|_| panic!("the parser panicked on {}", replay()));
        assert!(
            took <= time_bound(input.len()),
            "{took:?} > {:?} for {}",
            time_bound(input.len()),
            replay()
        );
        assert!(
            peak <= memory_bound(input.len()),
            "peak {peak} B > {} B for {}",
            memory_bound(input.len()),
            replay()
        );
        if let Err(e) = &r {
            assert!(
                e.to_string().len() < 2000,
                "an error of {} bytes for {}",
                e.to_string().len(),
                replay()
            );
        }
        worst_time = worst_time.max(took.as_secs_f64() / time_bound(input.len()).as_secs_f64());
        worst_mem = worst_mem.max(peak as f64 / memory_bound(input.len()) as f64);
        if r.is_ok() {
            accepted += 1;
        }
        // accepted mutants breed (they reach deeper into the checks); the
        // seeds stay; a few rejected ones are kept for variety
        let keep = r.is_ok() || rng.below(64) == 0;
        if keep && pool.len() < 512 {
            pool.push(input);
        } else if keep {
            let i = seeds.len() + rng.below(pool.len() - seeds.len());
            pool[i] = input;
        }
    }
    eprintln!(
        "fuzzed {n} inputs in {secs} s (seed {seed}): {accepted} accepted, worst time {:.0}% and memory {:.0}% of their bounds",
        worst_time * 100.0,
        worst_mem * 100.0
    );
    assert!(n > 100, "only {n} inputs in {secs} s");
}
