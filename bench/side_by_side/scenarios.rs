//! The four scenarios, each running every server in turn per round, and
//! the verdict on each target of issue 6.

use std::path::Path;
use std::time::Duration;

use crate::first_byte::{ORIGIN, SEEK, SMALL};
use crate::load::{self, Answers, Requests, concurrent_gets, peak_resident_during, wrk};
use crate::objects::*;
use crate::rejections::{EXPIRED, FORGED, HITS};
use crate::report::{Measure, Reference, Samples};
use crate::scaling::ONE_THREAD;
use crate::servers::{Server, keyfront_memory_mib};
use crate::tls::H2;
use crate::{Failure, Settings};

pub const MEASURES: &[Measure] = &[
    Measure {
        scenario: "1. hot hits, 4 KiB, 64 connections",
        name: "requests/s",
        unit: "median",
        decimals: 0,
    },
    Measure {
        scenario: "1. hot hits, 4 KiB, 64 connections",
        name: "p99 latency",
        unit: "ms",
        decimals: 2,
    },
    Measure {
        scenario: "2. hot 1 MiB ranges of 256 MiB, 16 connections",
        name: "throughput",
        unit: "MiB/s",
        decimals: 0,
    },
    Measure {
        scenario: "3. cold 64 MiB, 50 clients at once",
        name: "origin requests",
        unit: "count",
        decimals: 0,
    },
    Measure {
        scenario: "3. cold 64 MiB, 50 clients at once",
        name: "origin bytes",
        unit: "MiB",
        decimals: 1,
    },
    Measure {
        scenario: "3. cold 64 MiB, 50 clients at once",
        name: "first byte, median client",
        unit: "ms",
        decimals: 1,
    },
    Measure {
        scenario: "3. cold 64 MiB, 50 clients at once",
        name: "first byte, slowest client",
        unit: "ms",
        decimals: 1,
    },
    Measure {
        scenario: "3. cold 64 MiB, 50 clients at once",
        name: "last byte, median client",
        unit: "ms",
        decimals: 0,
    },
    Measure {
        scenario: "3. cold 64 MiB, 50 clients at once",
        name: "last byte, slowest client",
        unit: "ms",
        decimals: 0,
    },
    Measure {
        scenario: "4. 1 GiB streamed, 200 connections",
        name: "peak RSS",
        unit: "MiB",
        decimals: 0,
    },
    Measure {
        scenario: "4. 1 GiB streamed, 200 connections",
        name: "stream throughput",
        unit: "MiB/s",
        decimals: 0,
    },
    Measure {
        scenario: "5. hot hits, 1 thread per server",
        name: ONE_THREAD,
        unit: "median",
        decimals: 0,
    },
    Measure {
        scenario: "7. hot hits over HTTP/2 + TLS, 64 connections x 10 streams",
        name: H2,
        unit: "median",
        decimals: 0,
    },
];

/// Rows where keyfront is measured against a reference of its own kind.
pub const AGAINST_REFERENCE: &[Reference] = &[
    Reference {
        scenario: "6. refused requests, 64 connections",
        measure: FORGED,
        reference: (HITS, "keyfront"),
        unit: "requests/s",
        decimals: 0,
    },
    Reference {
        scenario: "6. refused requests, 64 connections",
        measure: EXPIRED,
        reference: (HITS, "keyfront"),
        unit: "requests/s",
        decimals: 0,
    },
    Reference {
        scenario: "8. cold miss, time to first byte (median of 9 per round)",
        measure: SEEK,
        reference: (SEEK, ORIGIN),
        unit: "ms",
        decimals: 3,
    },
    Reference {
        scenario: "8. cold miss, time to first byte (median of 9 per round)",
        measure: SMALL,
        reference: (SMALL, ORIGIN),
        unit: "ms",
        decimals: 3,
    },
];

pub fn hot_hits(settings: &Settings, servers: [&Server; 3], samples: &mut Samples, dir: &Path) -> Result<(), Failure> {
    let seconds = settings.seconds;
    for round in 0..=settings.rounds {
        for server in servers {
            let targets: Vec<String> = (0..HOT_COUNT).map(|i| server.target(&hot_key(i))).collect();
            // Round 0 warms each server's connections, memo and code paths; it is not recorded.
            let run = wrk(
                server.address,
                &Requests::Cycle(&targets),
                Answers::Served,
                64,
                if round == 0 { 2 } else { seconds },
                dir,
            )?;
            if round > 0 {
                println!(
                    "hot hits  round {round} {:>8}: {:>8.0} requests/s, p99 {:.2} ms",
                    server.name, run.requests_per_second, run.p99_ms
                );
                samples.add("requests/s", server.name, run.requests_per_second);
                samples.add("p99 latency", server.name, run.p99_ms);
            }
        }
    }
    Ok(())
}

pub fn hot_ranges(settings: &Settings, servers: [&Server; 3], samples: &mut Samples, dir: &Path) -> Result<(), Failure> {
    for round in 0..=settings.rounds {
        for server in servers {
            let target = server.target(RANGES_KEY);
            let requests = Requests::RandomRanges {
                target: &target,
                size: RANGES_SIZE,
                length: RANGE_LENGTH,
            };
            let run = wrk(
                server.address,
                &requests,
                Answers::Served,
                16,
                if round == 0 { 2 } else { settings.seconds },
                dir,
            )?;
            if round > 0 {
                let mib = run.bytes_per_second / MIB as f64;
                println!("ranges    round {round} {:>8}: {mib:>8.0} MiB/s", server.name);
                samples.add("throughput", server.name, mib);
            }
        }
    }
    Ok(())
}

pub fn cold(settings: &Settings, servers: [&Server; 2], samples: &mut Samples) -> Result<(), Failure> {
    for round in 0..settings.rounds {
        for server in servers {
            let relay = server.relay.as_ref().ok_or("a cold run needs an origin relay")?;
            let before = relay.traffic();
            let fetches = concurrent_gets(server.address, &server.target(&cold_key(round)), COLD_CLIENTS, COLD_SIZE)?;
            // Fills the viewers no longer wait for may still be finishing.
            std::thread::sleep(Duration::from_secs(1));
            let traffic = relay.traffic() - before;
            let millis = |pick: fn(&load::Fetch) -> Duration| {
                let mut values: Vec<f64> = fetches.iter().map(|f| pick(f).as_secs_f64() * 1e3).collect();
                values.sort_by(f64::total_cmp);
                (values[values.len() / 2], values[values.len() - 1])
            };
            let (first_median, first_slowest) = millis(|f| f.first_byte);
            let (last_median, last_slowest) = millis(|f| f.last_byte);
            println!(
                "cold      round {} {:>8}: {} origin requests, {:.1} MiB; first byte {first_median:.1}/{first_slowest:.1} ms, last byte {last_median:.0}/{last_slowest:.0} ms (median/slowest)",
                round + 1,
                server.name,
                traffic.requests,
                traffic.bytes as f64 / MIB as f64
            );
            samples.add("origin requests", server.name, traffic.requests as f64);
            samples.add("origin bytes", server.name, traffic.bytes as f64 / MIB as f64);
            samples.add("first byte, median client", server.name, first_median);
            samples.add("first byte, slowest client", server.name, first_slowest);
            samples.add("last byte, median client", server.name, last_median);
            samples.add("last byte, slowest client", server.name, last_slowest);
        }
    }
    Ok(())
}

pub fn streaming_memory(settings: &Settings, servers: [&Server; 2], samples: &mut Samples, dir: &Path) -> Result<(), Failure> {
    for round in 1..=settings.rounds {
        for server in servers {
            let targets = [server.target(STREAM_KEY)];
            let (run, peak) = peak_resident_during(server.process.pids(), || {
                wrk(
                    server.address,
                    &Requests::Cycle(&targets),
                    Answers::Served,
                    STREAM_CONNECTIONS,
                    settings.seconds,
                    dir,
                )
            });
            let run = run?;
            let (peak_mib, mib_per_second) = (peak as f64 / MIB as f64, run.bytes_per_second / MIB as f64);
            println!(
                "streaming round {round} {:>8}: peak RSS {peak_mib:.0} MiB, {mib_per_second:.0} MiB/s",
                server.name
            );
            samples.add("peak RSS", server.name, peak_mib);
            samples.add("stream throughput", server.name, mib_per_second);
        }
    }
    Ok(())
}

/// Every target, met or not, from the medians; rows without a target
/// are stated as figures.
pub fn targets(samples: &Samples) -> String {
    let ratio = |measure, server, other| samples.median_ratio(measure, server, other).unwrap_or(f64::NAN);
    let against = |measure, reference: (&'static str, &'static str)| {
        samples.median_ratio_between((measure, "keyfront"), reference).unwrap_or(f64::NAN)
    };
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let hits_ceiling = ratio("requests/s", "keyfront", "ceiling");
    let hits_nginx = ratio("requests/s", "keyfront", "nginx");
    let ceiling_nginx = ratio("requests/s", "ceiling", "nginx");
    let ranges = ratio("throughput", "keyfront", "nginx");
    let origin_bytes = ratio("origin bytes", "keyfront", "nginx");
    let first_byte = ratio("first byte, median client", "keyfront", "nginx");
    let rss = samples.median("peak RSS", "keyfront").unwrap_or(f64::NAN);
    let nginx_rss = samples.median("peak RSS", "nginx").unwrap_or(f64::NAN);
    let seek = against(SEEK, (SEEK, ORIGIN));
    let small = against(SMALL, (SMALL, ORIGIN));
    let scaling = |server| {
        let (two, one) = (samples.median("requests/s", server), samples.median(ONE_THREAD, server));
        two.zip(one).map_or(f64::NAN, |(two, one)| two / one)
    };
    let mut text = String::from("Targets (issue 15):\n");
    let mut line = |text_line: String| {
        text.push_str("- ");
        text.push_str(&text_line);
        text.push('\n');
    };
    line(format!(
        "1. hot hits at least 0.9 of the ceiling: {hits_ceiling:.2} ({}); at least 0.9 of nginx: {hits_nginx:.2} ({}); the ceiling itself is {ceiling_nginx:.2} of nginx",
        verdict(hits_ceiling >= 0.9),
        verdict(hits_nginx >= 0.9)
    ));
    line(format!(
        "2. hot 1 MiB ranges at least 1.0 of nginx: {ranges:.2} ({})",
        verdict(ranges >= 1.0)
    ));
    line(format!(
        "3. cold origin bytes at most nginx's: {origin_bytes:.2} ({}); first byte no worse than nginx's: {first_byte:.2} ({})",
        verdict(origin_bytes <= 1.0),
        verdict(first_byte <= 1.0)
    ));
    line(format!(
        "4. peak RSS at most the memory budget + 100 MiB = {} MiB: {rss:.0} MiB ({}); nginx {nginx_rss:.0} MiB",
        keyfront_memory_mib() + 100,
        verdict(rss <= (keyfront_memory_mib() + 100) as f64)
    ));
    line(format!(
        "5. from 1 thread to 2 (no target; wrk shares the 2 cores): keyfront x{:.2}, nginx x{:.2}, ceiling x{:.2}",
        scaling("keyfront"),
        scaling("nginx"),
        scaling("ceiling")
    ));
    line(format!(
        "6. refused requests (no target) per hit's cost: forged signatures {:.2} of the hit rate, expired URLs {:.2}",
        against(FORGED, (HITS, "keyfront")),
        against(EXPIRED, (HITS, "keyfront"))
    ));
    line(format!(
        "7. hits over HTTP/2 + TLS (no target): {:.2} of nginx",
        ratio(H2, "keyfront", "nginx")
    ));
    line(format!(
        "8. cold first byte at most 1.2x the origin's: deep seek {seek:.2}x ({}), small object {small:.2}x ({})",
        verdict(seek <= 1.2),
        verdict(small <= 1.2)
    ));
    text
}
