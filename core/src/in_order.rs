//! Results of concurrent work handed on in the order the work was asked for.
//!
//! Purchases run concurrently and finish in whatever order the network allows, but what they
//! write down — a sample's id, its place in the training set — must not depend on that order,
//! or a run could not be replayed from its seed. [`InOrder`] holds each result back until every
//! result asked for before it has arrived.

use std::collections::BTreeMap;

/// Results numbered 0, 1, 2, … as they were asked for, released in that order.
#[derive(Debug)]
pub struct InOrder<T> {
    next: usize,
    waiting: BTreeMap<usize, T>,
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        InOrder { next: 0, waiting: BTreeMap::new() }
    }
}

impl<T> InOrder<T> {
    /// Accepts result number `index`; returns every result now due, in order (none while an
    /// earlier one is still missing).
    pub fn accept(&mut self, index: usize, result: T) -> Vec<T> {
        self.waiting.insert(index, result);
        let mut due = vec![];
        while let Some(result) = self.waiting.remove(&self.next) {
            due.push(result);
            self.next += 1;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_results_back_until_every_earlier_one_arrived() {
        let mut order = InOrder::default();
        assert!(order.accept(2, 'c').is_empty());
        assert!(order.accept(1, 'b').is_empty());
        assert_eq!(order.accept(0, 'a'), ['a', 'b', 'c']);
        assert_eq!(order.accept(3, 'd'), ['d']);
        assert!(order.accept(5, 'f').is_empty());
        assert_eq!(order.accept(4, 'e'), ['e', 'f']);
    }
}
