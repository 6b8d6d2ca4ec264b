//! Scenario 6: what a refused request costs keyfront, against a hit in the
//! same round: an attacker's price for a request, and ours.

use std::path::Path;

use crate::load::{Answers, Requests, wrk};
use crate::objects::*;
use crate::report::Samples;
use crate::servers::Server;
use crate::{Failure, Settings};

/// Distinct forged signatures cycled through: the signature memo keeps
/// only signatures that verified, so each costs a public-key operation.
const FORGED_URLS: usize = 1024;

pub const HITS: &str = "hits, same round";
pub const FORGED: &str = "refused: forged signature";
pub const EXPIRED: &str = "refused: expired URL";

pub fn rejections(settings: &Settings, keyfront: &Server, samples: &mut Samples, dir: &Path) -> Result<(), Failure> {
    let hits: Vec<String> = (0..HOT_COUNT).map(|i| keyfront.target(&hot_key(i))).collect();
    let forged: Vec<String> = (0..FORGED_URLS).map(|i| keyfront.forged_target(&hot_key(i % HOT_COUNT))).collect();
    let expired: Vec<String> = (0..HOT_COUNT).map(|i| keyfront.expired_target(&hot_key(i))).collect();
    let loads = [
        (HITS, &hits, Answers::Served),
        (FORGED, &forged, Answers::Refused),
        (EXPIRED, &expired, Answers::Refused),
    ];
    for round in 0..=settings.rounds {
        for (measure, targets, answers) in loads {
            // Round 0 warms connections and code paths; it is not recorded.
            let seconds = if round == 0 { 2 } else { settings.seconds };
            let run = wrk(keyfront.address, &Requests::Cycle(targets), answers, 64, seconds, dir)?;
            if round > 0 {
                println!("refusals  round {round} {measure:>28}: {:>8.0} requests/s", run.requests_per_second);
                samples.add(measure, keyfront.name, run.requests_per_second);
            }
        }
    }
    Ok(())
}
