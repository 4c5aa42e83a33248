//! Maglev consistent hashing (Eisenbud et al., NSDI'16) as Cilium builds it
//! (`pkg/maglev`): backends sorted by name, each with murmur3-128 hashes of
//! its name under the cluster-wide seed giving `offset = h1 mod M` and
//! `skip = h2 mod (M-1) + 1`; round-robin, each backend takes its next
//! free preferred slot until all M slots are filled. Every node builds the
//! same table from the same backends and seed.

/// Cilium's default table size (prime; about 160 backends at <= 1 % disruption).
pub const DEFAULT_M: u32 = 16381;

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    #[error("maglev table size {0} is not a prime")]
    NotPrime(u32),
    #[error("maglev table size {m} is too small for {backends} backends (needs more slots than backends)")]
    TooSmall { m: u32, backends: usize },
}

pub fn is_prime(n: u32) -> bool {
    n >= 2
        && (2..)
            .take_while(|d: &u32| (*d as u64) * (*d as u64) <= n as u64)
            .all(|d| !n.is_multiple_of(d))
}

/// The lookup table: slot -> index into `names` (sorted as given after
/// sorting). `names` are the backends' stable names (e.g. "10.0.1.5:8080").
/// Returns the sorted names and the table.
pub fn table(names: &[String], m: u32, seed: u32) -> Result<(Vec<String>, Vec<u32>), MaglevError> {
    if !is_prime(m) {
        return Err(MaglevError::NotPrime(m));
    }
    let mut sorted = names.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.is_empty() {
        return Ok((sorted, vec![]));
    }
    if sorted.len() as u64 >= m as u64 {
        return Err(MaglevError::TooSmall { m, backends: sorted.len() });
    }
    let perm: Vec<(u64, u64)> = sorted
        .iter()
        .map(|n| {
            let (h1, h2) = murmur3_x64_128(n.as_bytes(), seed);
            (h1 % m as u64, h2 % (m as u64 - 1) + 1)
        })
        .collect();
    let mut next = vec![0u64; sorted.len()];
    let mut slots = vec![u32::MAX; m as usize];
    let mut filled = 0u32;
    'fill: loop {
        for (i, (offset, skip)) in perm.iter().enumerate() {
            let mut c = (offset + next[i] * skip) % m as u64;
            while slots[c as usize] != u32::MAX {
                next[i] += 1;
                c = (offset + next[i] * skip) % m as u64;
            }
            slots[c as usize] = i as u32;
            next[i] += 1;
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    Ok((sorted, slots))
}

/// MurmurHash3 x64 128-bit (Austin Appleby's reference), as (h1, h2).
pub fn murmur3_x64_128(data: &[u8], seed: u32) -> (u64, u64) {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let fmix = |mut k: u64| {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    };
    let (mut h1, mut h2) = (seed as u64, seed as u64);
    let blocks = data.len() / 16;
    for b in 0..blocks {
        let k1 = u64::from_le_bytes(data[b * 16..b * 16 + 8].try_into().unwrap());
        let k2 = u64::from_le_bytes(data[b * 16 + 8..b * 16 + 16].try_into().unwrap());
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 = h1.rotate_left(27).wrapping_add(h2).wrapping_mul(5).wrapping_add(0x52dc_e729);
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 = h2.rotate_left(31).wrapping_add(h1).wrapping_mul(5).wrapping_add(0x3849_5ab5);
    }
    let tail = &data[blocks * 16..];
    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, byte) in tail.iter().enumerate() {
        match i {
            0..=7 => k1 ^= (*byte as u64) << (8 * i),
            _ => k2 ^= (*byte as u64) << (8 * (i - 8)),
        }
    }
    if tail.len() > 8 {
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}
