#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sudomode_fuzz::store_roundtrip::store_roundtrip(data);
});
