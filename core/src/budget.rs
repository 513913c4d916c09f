//! Spending limits: teacher calls and money. A call is reserved at its quoted price before it is
//! made, so concurrent purchases stop exactly at the limit instead of overshooting it. Judge
//! calls spend money only: they are reserved and settled the same way without counting as calls.

use evolve_sdk::Cost;

/// What may still be spent, and what has been.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    max_calls: Option<u64>,
    max_cost: Option<Cost>,
    paid_calls: u64,
    paid_cost: Cost,
    reserved_calls: u64,
    reserved_cost: Cost,
}

/// A reserved call: settle it with [`Budget::settle`] or give it back with [`Budget::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Reservation {
    quoted: Cost,
    /// Whether it counts against the call limit (a teacher call) or only against the money.
    call: bool,
}

impl Budget {
    /// A budget of at most `max_calls` calls and `max_cost`, `paid_calls` and `paid_cost` of which
    /// are already spent (a resumed run).
    pub fn new(max_calls: Option<u64>, max_cost: Option<Cost>, paid_calls: u64, paid_cost: Cost) -> Budget {
        Budget { max_calls, max_cost, paid_calls, paid_cost, ..Default::default() }
    }

    /// Reserves one call quoted at `price`, if the limits allow it.
    pub fn reserve(&mut self, price: Cost) -> Option<Reservation> {
        let calls = self.paid_calls + self.reserved_calls + 1;
        let cost = self.paid_cost + self.reserved_cost + price;
        if self.max_calls.is_some_and(|max| calls > max) || self.max_cost.is_some_and(|max| cost > max) {
            return None;
        }
        self.reserved_calls += 1;
        self.reserved_cost = self.reserved_cost + price;
        Some(Reservation { quoted: price, call: true })
    }

    /// Reserves `price` of money only (a judge call), if the cost limit allows it.
    pub fn reserve_cost(&mut self, price: Cost) -> Option<Reservation> {
        let cost = self.paid_cost + self.reserved_cost + price;
        if self.max_cost.is_some_and(|max| cost > max) {
            return None;
        }
        self.reserved_cost = self.reserved_cost + price;
        Some(Reservation { quoted: price, call: false })
    }

    /// Books a reserved call that was made and cost `actual`.
    pub fn settle(&mut self, reservation: Reservation, actual: Cost) {
        self.unreserve(reservation);
        self.paid_calls += u64::from(reservation.call);
        self.paid_cost = self.paid_cost + actual;
    }

    /// Corrects a call booked at `booked` that turned out to cost `actual`.
    pub fn reprice(&mut self, booked: Cost, actual: Cost) {
        self.paid_cost = Cost { micro_usd: self.paid_cost.micro_usd.saturating_sub(booked.micro_usd) } + actual;
    }

    /// Returns a reserved call that was not made (or failed without charge).
    pub fn release(&mut self, reservation: Reservation) {
        self.unreserve(reservation);
    }

    fn unreserve(&mut self, reservation: Reservation) {
        self.reserved_calls = self.reserved_calls.saturating_sub(u64::from(reservation.call));
        self.reserved_cost =
            Cost { micro_usd: self.reserved_cost.micro_usd.saturating_sub(reservation.quoted.micro_usd) };
    }

    /// Whether money for a call quoted at `price` is left (calls aside).
    pub fn affords(&self, price: Cost) -> bool {
        self.max_cost.is_none_or(|max| self.paid_cost + self.reserved_cost + price <= max)
    }

    /// Whether not even a free call fits any more.
    pub fn exhausted(&self) -> bool {
        self.max_calls.is_some_and(|max| self.paid_calls + self.reserved_calls >= max)
            || self.max_cost.is_some_and(|max| self.paid_cost + self.reserved_cost >= max)
    }

    /// Money reserved for calls in flight.
    pub fn reserved_cost(&self) -> Cost {
        self.reserved_cost
    }

    /// Calls paid so far.
    pub fn calls(&self) -> u64 {
        self.paid_calls
    }

    /// Money spent so far.
    pub fn cost(&self) -> Cost {
        self.paid_cost
    }

    /// The call limit, if any.
    pub fn max_calls(&self) -> Option<u64> {
        self.max_calls
    }

    /// Calls that may still be reserved (`None`: no call limit).
    pub fn calls_left(&self) -> Option<u64> {
        self.max_calls.map(|max| max.saturating_sub(self.paid_calls + self.reserved_calls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_exactly_at_the_call_limit() {
        let mut budget = Budget::new(Some(3), None, 1, Cost::ZERO);
        let a = budget.reserve(Cost::ZERO).unwrap();
        let b = budget.reserve(Cost::ZERO).unwrap();
        assert!(budget.reserve(Cost::ZERO).is_none());
        assert!(budget.exhausted());
        budget.release(b);
        budget.settle(a, Cost::ZERO);
        assert!(!budget.exhausted());
        let c = budget.reserve(Cost::ZERO).unwrap();
        budget.settle(c, Cost::ZERO);
        assert_eq!(budget.calls(), 3);
        assert!(budget.reserve(Cost::ZERO).is_none());
    }

    #[test]
    fn judge_spending_counts_against_the_money_not_the_calls() {
        let mut budget = Budget::new(Some(2), Some(Cost::from_usd(0.10)), 0, Cost::ZERO);
        let judge = budget.reserve_cost(Cost::from_usd(0.05)).unwrap();
        assert!(budget.reserve_cost(Cost::from_usd(0.06)).is_none(), "0.11 would exceed 0.10");
        budget.settle(judge, Cost::from_usd(0.03));
        assert_eq!((budget.calls(), budget.cost()), (0, Cost::from_usd(0.03)));
        let a = budget.reserve(Cost::ZERO).unwrap();
        let b = budget.reserve(Cost::ZERO).unwrap();
        assert!(budget.reserve(Cost::ZERO).is_none(), "two teacher calls, whatever the judge spent");
        budget.release(a);
        budget.settle(b, Cost::from_usd(0.07));
        assert!(budget.exhausted(), "0.10 spent");
        assert!(budget.reserve_cost(Cost { micro_usd: 1 }).is_none());
        assert!(!budget.affords(Cost { micro_usd: 1 }) && budget.affords(Cost::ZERO));
        assert!(budget.reserve_cost(Cost::ZERO).is_some(), "a free judge is never stopped");
    }

    #[test]
    fn never_quotes_past_the_cost_limit() {
        let mut budget = Budget::new(None, Some(Cost::from_usd(0.10)), 0, Cost::ZERO);
        let price = Cost::from_usd(0.04);
        let a = budget.reserve(price).unwrap();
        let b = budget.reserve(price).unwrap();
        assert!(budget.reserve(price).is_none(), "0.12 would exceed 0.10");
        budget.settle(a, price);
        budget.settle(b, price);
        assert_eq!(budget.cost(), Cost::from_usd(0.08));
        assert!(budget.reserve(Cost::from_usd(0.02)).is_some());
    }
}
