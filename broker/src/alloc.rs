//! The process allocator: the system allocator, except that huge requests are only reserved.
//!
//! Why: kafka-protocol 0.18 sizes an array with `Vec::with_capacity(count)` straight from the
//! wire, before it knows whether `count` elements can possibly follow. A four-byte body can ask
//! for over 100 GiB; the system allocator refuses and Rust aborts the process. Whatever a decoder
//! does, Sluice must not die of it, so any request of [`HUGE_BYTES`] or more is served by an
//! anonymous `MAP_NORESERVE` mapping: address space only, no memory committed. A decoder that asks
//! for a lie then fails on the bytes that are not there, the vector is dropped, and the mapping is
//! returned having never touched a page. Memory that is really used stays bounded by the frame
//! limits checked before decoding.
//!
//! Nothing legitimate in Sluice allocates this much at once: frames are capped at
//! `socket.request.max.bytes` (100 MiB by default) and reads at `fetch.max.bytes`.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are reserved lazily instead of committed.
pub const HUGE_BYTES: usize = 1 << 30;
/// Reservations beyond this are refused outright (x86-64 user space is 128 TiB).
const RESERVE_MAX_BYTES: usize = 1 << 45;
const PAGE_BYTES: usize = 4096;

/// See the module documentation.
pub struct LazyHugeAlloc;

impl LazyHugeAlloc {
    fn is_huge(layout: Layout) -> bool {
        layout.size() >= HUGE_BYTES && layout.align() <= PAGE_BYTES
    }

    unsafe fn reserve(size: usize) -> *mut u8 {
        if size > RESERVE_MAX_BYTES {
            return std::ptr::null_mut();
        }
        // SAFETY: an anonymous private mapping with no address hint has no preconditions.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            ptr.cast()
        }
    }
}

// SAFETY: every pointer handed out is either from `System` (and returned to it, because the same
// layout decides the path on free) or from `mmap` of at least `layout.size()` bytes, page aligned,
// which satisfies any alignment up to a page (larger alignments take the `System` path).
unsafe impl GlobalAlloc for LazyHugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::is_huge(layout) {
            // SAFETY: see `reserve`.
            unsafe { Self::reserve(layout.size()) }
        } else {
            // SAFETY: forwarded unchanged.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::is_huge(layout) {
            // Anonymous mappings are zero-filled.
            // SAFETY: see `reserve`.
            unsafe { Self::reserve(layout.size()) }
        } else {
            // SAFETY: forwarded unchanged.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::is_huge(layout) {
            // SAFETY: `ptr` came from `reserve` with this exact size.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !Self::is_huge(layout) && !Self::is_huge(new_layout) {
            // SAFETY: forwarded unchanged; both sides are System's.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate, copy the common prefix, free the old block: each on its own path.
        unsafe {
            let new_ptr = self.alloc(new_layout);
            if !new_ptr.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new_ptr
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lying_capacity_is_reserved_not_committed() {
        // 150 GB of u64s: more than this machine has; a committed allocation would abort.
        let v: Vec<u64> = Vec::with_capacity(150_000_000_000 / 8);
        assert!(v.capacity() >= 150_000_000_000 / 8);
        drop(v);
        let mut small: Vec<u8> = Vec::with_capacity(16);
        small.extend_from_slice(b"still works");
        assert_eq!(&small, b"still works");
    }

    #[test]
    fn growing_across_the_huge_threshold_keeps_contents() {
        let mut v: Vec<u8> = Vec::with_capacity(16);
        v.extend_from_slice(b"abc");
        v.reserve_exact(super::HUGE_BYTES * 2);
        assert!(v.capacity() >= super::HUGE_BYTES * 2);
        v.shrink_to(10);
        assert_eq!(&v, b"abc");
    }
}
