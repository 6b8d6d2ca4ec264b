//! Scenario 5: hot hits with one thread per server (keyfront's pingora
//! threads, nginx's workers, the ceiling's), beside the main run's one per
//! core: how each scales from one core to two.

use std::path::Path;

use crate::load::{Answers, Requests, get_whole, wrk};
use crate::objects::*;
use crate::report::Samples;
use crate::servers;
use crate::{Failure, Settings};

pub const ONE_THREAD: &str = "requests/s, 1 thread";

pub fn one_thread(
    settings: &Settings,
    keyfront_binary: &Path,
    origin: std::net::SocketAddr,
    samples: &mut Samples,
    dir: &Path,
) -> Result<(), Failure> {
    let dir = dir.join("one-thread");
    std::fs::create_dir_all(&dir)?;
    let keyfront = servers::start_keyfront(keyfront_binary, &dir, origin, 1, None)?;
    let nginx = servers::start_nginx(&dir, origin, 1, None)?;
    let ceiling = servers::start_ceiling(&dir, 1)?;
    for server in [&keyfront, &nginx] {
        for index in 0..HOT_COUNT {
            for _ in 0..2 {
                get_whole(server.address, &server.target(&hot_key(index)), HOT_SIZE)?;
            }
        }
    }
    for round in 0..=settings.rounds {
        for server in [&keyfront, &nginx, &ceiling] {
            let targets: Vec<String> = (0..HOT_COUNT).map(|i| server.target(&hot_key(i))).collect();
            let seconds = if round == 0 { 2 } else { settings.seconds };
            let run = wrk(server.address, &Requests::Cycle(&targets), Answers::Served, 64, seconds, &dir)?;
            if round > 0 {
                println!(
                    "1 thread  round {round} {:>8}: {:>8.0} requests/s",
                    server.name, run.requests_per_second
                );
                samples.add(ONE_THREAD, server.name, run.requests_per_second);
            }
        }
    }
    Ok(())
}
