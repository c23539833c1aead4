//! The DATA reader: any byte stream, in any split, ends at the same place
//! with the same message, within its size bound.
#![no_main]

use alert_relay::ingest::data::{DataReader, Progress};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let max = 64;
    let mut whole = DataReader::new(max);
    let whole_end = whole.feed(stream);

    let cut = (split as usize).min(stream.len());
    let mut parts = DataReader::new(max);
    let parts_end = match parts.feed(&stream[..cut]) {
        Progress::Done(n) => Progress::Done(n),
        Progress::More => match parts.feed(&stream[cut..]) {
            Progress::Done(n) => Progress::Done(cut + n),
            Progress::More => Progress::More,
        },
    };
    assert_eq!(whole_end, parts_end);
    assert_eq!(whole.too_big(), parts.too_big());
    let body = whole.into_body();
    assert!(body.len() <= max);
    assert_eq!(body, parts.into_body());
});
