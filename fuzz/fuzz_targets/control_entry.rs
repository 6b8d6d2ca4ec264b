//! A control-log entry, as anyone who can write the bucket may shape it:
//! nothing but an entry signed with the fleet secret for its own name is
//! ever read as one, and reading never panics. The first byte splits the
//! input into the entry's name and its body.
#![no_main]

use keyfront::fleet::{FleetSecret, signed_entry, verified_entry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let secret = FleetSecret::new(&[7; 32]).unwrap();
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let (name, body) = data.split_at(split);
    let name = String::from_utf8_lossy(name);
    assert!(verified_entry(&secret, &name, body).is_err(), "an unsigned body is never an entry");
    // Signed for its name, the body is an entry unless it does not parse,
    // and under any other name or secret it is none.
    let signed = signed_entry(&secret, &name, body);
    if let Err(why) = verified_entry(&secret, &name, &signed) {
        assert!(why.starts_with("signed but malformed"), "{why}");
    }
    assert!(verified_entry(&secret, &format!("{name}x"), &signed).is_err());
    assert!(verified_entry(&FleetSecret::new(&[8; 32]).unwrap(), &name, &signed).is_err());
});
