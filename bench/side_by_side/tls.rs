//! Scenario 7: hot hits over HTTP/2 and TLS, keyfront beside nginx with the
//! same certificate, loaded by `h2load` (10 streams per connection).

use crate::load::h2load;
use crate::objects::*;
use crate::report::Samples;
use crate::servers::Server;
use crate::{Failure, Settings};

pub const H2: &str = "h2 requests/s";

pub fn h2_hits(settings: &Settings, servers: [&Server; 2], samples: &mut Samples) -> Result<(), Failure> {
    for round in 0..=settings.rounds {
        for server in servers {
            let urls: Option<Vec<String>> = (0..HOT_COUNT).map(|i| server.https_url(&hot_key(i))).collect();
            let urls = urls.ok_or_else(|| format!("{} has no TLS listener", server.name))?;
            let run = h2load(&urls, 64, if round == 0 { 2 } else { settings.seconds })?;
            if round > 0 {
                println!(
                    "h2 hits   round {round} {:>8}: {:>8.0} requests/s",
                    server.name, run.requests_per_second
                );
                samples.add(H2, server.name, run.requests_per_second);
            }
        }
    }
    Ok(())
}
