//! The observer's flow ring buffer: a fixed capacity (2^n − 1, Hubble's
//! rule; 4095 by default), the oldest flow overwritten when full, and
//! counts of what was seen and what was overwritten.
use crate::flow::Flow;
use std::collections::VecDeque;
use std::sync::Arc;

pub const DEFAULT_CAPACITY: usize = 4095;

#[derive(Debug)]
pub struct Ring {
    buf: VecDeque<(u64, Arc<Flow>)>,
    cap: usize,
    seen: u64,
    overwritten: u64,
}

impl Ring {
    /// A ring of `cap` flows; `cap` must be 2^n − 1 (1, 3, 7, … 65535).
    pub fn new(cap: usize) -> Result<Self, String> {
        if cap == 0 || cap > 65535 || !(cap + 1).is_power_of_two() {
            return Err(format!("ring buffer capacity {cap}: must be 2^n-1 between 1 and 65535"));
        }
        Ok(Ring {
            buf: VecDeque::with_capacity(cap),
            cap,
            seen: 0,
            overwritten: 0,
        })
    }

    /// Add a flow (shared with whoever else holds it); returns its sequence
    /// number (from 1).
    pub fn push(&mut self, f: impl Into<Arc<Flow>>) -> u64 {
        let f = f.into();
        if self.buf.len() == self.cap {
            self.buf.pop_front();
            self.overwritten += 1;
        }
        self.seen += 1;
        self.buf.push_back((self.seen, f));
        self.seen
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn capacity(&self) -> usize {
        self.cap
    }
    /// Flows ever added.
    pub fn seen(&self) -> u64 {
        self.seen
    }
    /// Flows overwritten before anyone could read them from the buffer.
    pub fn overwritten(&self) -> u64 {
        self.overwritten
    }

    /// The flows held, oldest first, with their sequence numbers.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &(u64, Arc<Flow>)> {
        self.buf.iter()
    }

    /// Flows after sequence number `seq`, oldest first.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = &(u64, Arc<Flow>)> {
        self.buf.iter().filter(move |(s, _)| *s > seq)
    }

    /// Sequence numbers after `seq` that were overwritten before being read.
    pub fn missed_since(&self, seq: u64) -> u64 {
        self.buf.front().map_or(0, |(first, _)| first.saturating_sub(seq + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_two_to_the_n_minus_one_and_the_oldest_goes() {
        assert!(Ring::new(4096).is_err());
        assert!(Ring::new(0).is_err());
        let mut r = Ring::new(3).unwrap();
        for i in 0..5 {
            r.push(Flow {
                node_name: format!("f{i}"),
                ..Default::default()
            });
        }
        let names: Vec<&str> = r.iter().map(|(_, f)| f.node_name.as_str()).collect();
        assert_eq!(names, ["f2", "f3", "f4"]);
        assert_eq!((r.seen(), r.overwritten(), r.len()), (5, 2, 3));
        assert_eq!(r.after(4).count(), 1);
        assert_eq!(r.missed_since(0), 2, "a reader at 0 lost flows 1 and 2");
        assert_eq!(r.missed_since(3), 0);
    }
}
