//! A bounded log of events with followers: the agent's own events
//! (GetAgentEvents) and the datapath's debug messages (GetDebugEvents).
//! Each event gets a sequence number, so a reader that took what is held
//! and then follows tells the two apart.
use std::collections::VecDeque;
use std::sync::Mutex;

pub struct EventLog<T> {
    keep: usize,
    inner: Mutex<(u64, VecDeque<(u64, T)>)>,
    live: tokio::sync::broadcast::Sender<(u64, T)>,
}

impl<T: Clone> EventLog<T> {
    /// Keeps the last `keep` events for readers that come later.
    pub fn new(keep: usize) -> Self {
        Self {
            keep,
            inner: Mutex::new((0, VecDeque::new())),
            live: tokio::sync::broadcast::channel(keep).0,
        }
    }

    pub fn push(&self, e: T) {
        let mut g = self.inner.lock().unwrap();
        g.0 += 1;
        let seq = g.0;
        if g.1.len() == self.keep {
            g.1.pop_front();
        }
        g.1.push_back((seq, e.clone()));
        let _ = self.live.send((seq, e));
    }

    /// The kept events, oldest first.
    pub fn held(&self) -> Vec<(u64, T)> {
        self.inner.lock().unwrap().1.iter().cloned().collect()
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<(u64, T)> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_events_numbered_and_tells_followers() {
        let log = EventLog::new(2);
        let mut rx = log.subscribe();
        for e in ["a", "b", "c"] {
            log.push(e);
        }
        assert_eq!(log.held(), [(2, "b"), (3, "c")]);
        // a follower that fell behind by more than what is kept is told so
        assert_eq!(rx.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Lagged(1)));
        assert_eq!(rx.try_recv().unwrap(), (2, "b"));
    }
}
