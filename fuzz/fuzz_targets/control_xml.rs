//! The control plane's XML reader: what it accepts, written back, reads as
//! the same tree (the echo Terraform relies on), and it never nests deeper
//! than its bound.
#![no_main]

use keyfront::control::xml::Element;
use libfuzzer_sys::fuzz_target;

fn depth(element: &Element) -> usize {
    1 + element.children.iter().map(depth).max().unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(element) = Element::parse(data, "DistributionConfig") {
        assert!(depth(&element) <= 32);
        let written = element.to_document();
        let again = Element::parse(written.as_bytes(), "DistributionConfig").expect("what is written reads back");
        assert_eq!(again, element);
    }
});
