//! Fuzzes the request path the server runs on every frame: `take_frame` → `decode_request` →
//! `decode_body::<T>` for the API's request type. See `fuzz/README.md`.
//!
//! The input is a request frame without its size prefix (api key i16, api version i16,
//! correlation id i32, client id, body), steered onto the APIs Sluice registers. Sluice's global
//! allocator is linked in from the `sluice` library, as in the broker itself.
//!
//! Panics: libfuzzer-sys aborts on any panic, even one `codec::guarded` would catch. By default
//! this target restores the production semantics (a panic inside a decoder is caught and closes
//! one connection), printing each caught panic once; a panic that escapes Sluice's guards still
//! aborts and is a crash. `SLUICE_FUZZ_STRICT_PANICS=1` aborts on every panic instead, to hunt
//! the kafka-protocol panics that Sluice only survives.

#![no_main]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use libfuzzer_sys::fuzz_target;

/// The broker's default `socket.request.max.bytes`.
const MAX_FRAME_BYTES: usize = 100 << 20;

static INIT: Once = Once::new();
/// Caught panics printed so far (the first few are enough to see what kind they are).
static PANICS_PRINTED: AtomicUsize = AtomicUsize::new(0);
const PANICS_PRINTED_MAX: usize = 20;

fn init() {
    sluice_fuzz::assert_registry_covered();
    if std::env::var_os("SLUICE_FUZZ_STRICT_PANICS").is_some_and(|v| v == "1") {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        // Printed, not aborted: the caller (codec::guarded, or libfuzzer-sys's own catch_unwind
        // for a panic that escapes Sluice) decides whether this is a crash.
        if PANICS_PRINTED.fetch_add(1, Ordering::Relaxed) < PANICS_PRINTED_MAX {
            eprintln!("sluice-fuzz: panic (caught unless libFuzzer reports a crash next): {info}");
        }
    }));
}

fuzz_target!(|data: &[u8]| {
    INIT.call_once(init);
    let frame = sluice_fuzz::steer(data);
    sluice_fuzz::run_frame(&frame, MAX_FRAME_BYTES);
});
