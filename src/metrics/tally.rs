//! Request counts kept by each thread on its own and folded at scrape: a
//! request touches only its thread's tally (its mutex is contended by a
//! scrape alone), never a counter another core writes to.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::RequestRecord;

type Hasher = foldhash::fast::RandomState;

/// One thread's counts for one `Tallies`.
#[derive(Default)]
struct Tally {
    behaviors: HashMap<String, BehaviorTally, Hasher>,
    rejections: HashMap<&'static str, u64, Hasher>,
}

#[derive(Default)]
struct BehaviorTally {
    body_bytes: u64,
    /// By method, status and cache result.
    requests: HashMap<(&'static str, u16, &'static str), u64, Hasher>,
}

/// Every thread's counts added up.
#[derive(Default)]
pub struct Totals {
    /// By behavior, method, status and cache result.
    pub requests: HashMap<(String, &'static str, u16, &'static str), u64>,
    pub body_bytes: HashMap<String, u64>,
    pub rejections: HashMap<&'static str, u64>,
}

/// Distinguishes the `Tallies` of several edges in one process (tests).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's tally for each `Tallies` it recorded into.
    static MINE: RefCell<Vec<(u64, Arc<Mutex<Tally>>)>> = const { RefCell::new(Vec::new()) };
}

/// The request counts of one edge.
pub struct Tallies {
    id: u64,
    /// Every thread's tally, for the scrape to fold.
    all: Mutex<Vec<Arc<Mutex<Tally>>>>,
}

impl Default for Tallies {
    fn default() -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            all: Mutex::default(),
        }
    }
}

impl Tallies {
    /// Counts `request` (its method label already chosen) in this thread's tally.
    pub fn record(&self, request: &RequestRecord<'_>, method: &'static str) {
        MINE.with_borrow_mut(|mine| {
            let position = match mine.iter().position(|(id, _)| *id == self.id) {
                Some(position) => position,
                None => {
                    // Tallies of edges that are gone are held by this thread alone.
                    mine.retain(|(_, tally)| Arc::strong_count(tally) > 1);
                    let tally = Arc::default();
                    self.all.lock().expect("tallies lock").push(Arc::clone(&tally));
                    mine.push((self.id, tally));
                    mine.len() - 1
                }
            };
            mine[position].1.lock().expect("tally lock").add(request, method);
        });
    }

    /// Every thread's counts as of now. Each only grows, so the sums do too.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for tally in self.all.lock().expect("tallies lock").iter() {
            let tally = tally.lock().expect("tally lock");
            for (behavior, counts) in &tally.behaviors {
                *totals.body_bytes.entry(behavior.clone()).or_default() += counts.body_bytes;
                for ((method, status, cache), count) in &counts.requests {
                    *totals.requests.entry((behavior.clone(), *method, *status, *cache)).or_default() += count;
                }
            }
            for (code, count) in &tally.rejections {
                *totals.rejections.entry(code).or_default() += count;
            }
        }
        totals
    }
}

impl Tally {
    fn add(&mut self, request: &RequestRecord<'_>, method: &'static str) {
        if !self.behaviors.contains_key(request.behavior) {
            self.behaviors.insert(request.behavior.to_owned(), BehaviorTally::default());
        }
        let behavior = self.behaviors.get_mut(request.behavior).expect("inserted above");
        behavior.body_bytes += request.body_bytes;
        *behavior.requests.entry((method, request.status, request.cache)).or_default() += 1;
        if let Some(code) = request.rejection {
            *self.rejections.entry(code).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(behavior: &'static str, status: u16, rejection: Option<&'static str>) -> RequestRecord<'static> {
        RequestRecord {
            behavior,
            method: "GET",
            status,
            cache: "hit",
            body_bytes: 100,
            rejection,
        }
    }

    #[test]
    fn counts_from_every_thread_add_up_and_edges_stay_apart() {
        let (edge, other) = (Arc::new(Tallies::default()), Tallies::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let edge = edge.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        edge.record(&record("/videos/*", 200, None), "GET");
                    }
                    edge.record(&record("*", 403, Some("AccessDenied")), "GET");
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        other.record(&record("/videos/*", 200, None), "GET");
        let totals = edge.totals();
        assert_eq!(totals.requests[&("/videos/*".to_owned(), "GET", 200, "hit")], 4000);
        assert_eq!(totals.requests[&("*".to_owned(), "GET", 403, "hit")], 4);
        assert_eq!(totals.body_bytes["/videos/*"], 400_000);
        assert_eq!(totals.rejections["AccessDenied"], 4);
        assert_eq!(other.totals().requests.values().sum::<u64>(), 1);
    }
}
