//! The process's global allocator: the system allocator, except that very large blocks are
//! reserved with `mmap(MAP_NORESERVE)`.
//!
//! Why: the `kafka-protocol` decoders size a `Vec` from an array length read off the wire
//! before decoding a single element (`Vec::with_capacity(n)`), so a 14-byte request claiming
//! two billion topics asks for ~150 GB. The system allocator refuses that, and Rust aborts the
//! process on a failed allocation: one unauthenticated request would kill the broker (found by
//! `fuzz/fuzz_targets/request.rs`; reported upstream, not fixed in 0.18). A `MAP_NORESERVE`
//! reservation of address space succeeds without committing memory: the decoder fails at the
//! first missing element and the block is unmapped untouched, so the request costs nothing.
//! Memory is committed only for the pages really written, which is bounded by the request's
//! size (itself bounded by `socket.request.max.bytes` and `queued.max.request.bytes`).
//!
//! Invariant: a block of at least [`HUGE`] bytes (with alignment up to a page) lives in its own
//! mapping and is unmapped on free; everything else goes to the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks this large or larger are mapped directly. No legitimate allocation of the broker
/// comes near it (the largest are request buffers, at most `socket.request.max.bytes`).
pub const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct Allocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: huge blocks are whole page-aligned mappings (mmap returns page-aligned, zeroed
// memory), freed with the size they were mapped with; all others are the system allocator's.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and distinct.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_huge_reservation_costs_no_memory_and_round_trips() {
        // 64 GiB: more than the machine has; reserved, not committed.
        let mut v: Vec<u64> = Vec::with_capacity(8 << 30);
        v.push(7);
        v.extend(0..1000);
        assert_eq!(v[0], 7);
        assert_eq!(v.len(), 1001);
        v.shrink_to(2000);
        assert_eq!(v[1000], 999);
    }
}
