//! The `onex` binary's global allocator: mimalloc, entered through `mi_malloc` for ordinary
//! alignments.
//!
//! The `mimalloc` crate sends every allocation through `mi_malloc_aligned`. In mimalloc 3 that
//! call keeps its fast path only while the size class's current page has a free block; when
//! the page is full it takes the generic aligned route, and for a block size that is not a
//! power of two (a 22-byte `String` lives in a 24-byte block) that route over-allocates. A bus
//! that keeps what it publishes fills pages all the time: in `onex bench bus-memory` a publish
//! spent ~600 of its ~2,400 instructions in that route. `mi_malloc` and `mi_realloc` hand out
//! blocks aligned to at least a machine word, so every layout whose alignment is at most a word
//! (and at most its size) goes to them; wider alignments still go to the aligned calls.
//!
//! **The C libraries allocate from mimalloc too.** Linking this crate replaces the C `malloc`
//! family (`malloc`, `free`, `realloc`, `posix_memalign`, …) in the whole binary, so
//! librdkafka and SQLite use mimalloc as well (libmimalloc-sys's `override` feature). With
//! glibc's allocator librdkafka was the binary's slowest part: a Kafka producer allocates a
//! message and one block per header on the sending thread and frees them on its broker
//! thread, and glibc's arenas then sort the returned blocks back on the next `malloc`
//! (`_int_malloc` took ~half of a raw rdkafka sending thread's time in `onex bench
//! bus-kafka`). mimalloc returns such blocks to their page's thread-free list. Every producer
//! in the binary, ours and the raw baselines alike, ran 1.2–2× as fast (docs/decisions.md,
//! "Twenty-fourth session").
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: onex_alloc::Allocator = onex_alloc::Allocator;
//! let v: Vec<u64> = (0..1000).collect();
//! assert_eq!(v.iter().sum::<u64>(), 499_500);
//! ```

#![no_std]

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

use libmimalloc_sys as mi;

/// Every mimalloc block is aligned to at least this (its block sizes are multiples of a word).
const WORD: usize = core::mem::size_of::<usize>();

/// mimalloc as the global allocator (see the crate docs for why not `mimalloc::MiMalloc`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocator;

fn word_aligned(align: usize, size: usize) -> bool {
    align <= WORD && align <= size
}

#[allow(unsafe_code)]
// SAFETY (all four): mimalloc returns blocks of at least the requested size, aligned to at
// least a word, or to `align` through the `_aligned` calls; `dealloc` and `realloc` get
// pointers this allocator returned, as `GlobalAlloc` requires of its callers.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if word_aligned(layout.align(), layout.size()) {
            unsafe { mi::mi_malloc(layout.size()) as *mut u8 }
        } else {
            unsafe { mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if word_aligned(layout.align(), layout.size()) {
            unsafe { mi::mi_zalloc(layout.size()) as *mut u8 }
        } else {
            unsafe { mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if word_aligned(layout.align(), new_size) {
            unsafe { mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8 }
        } else {
            unsafe { mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8 }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    extern "C" {
        fn malloc(size: usize) -> *mut c_void;
        fn calloc(count: usize, size: usize) -> *mut c_void;
        fn realloc(p: *mut c_void, size: usize) -> *mut c_void;
        fn free(p: *mut c_void);
        fn mi_is_in_heap_region(p: *const c_void) -> bool;
    }

    #[test]
    #[allow(unsafe_code)]
    fn the_c_allocator_is_mimalloc() {
        // What librdkafka and SQLite call: without the override these are glibc's, whose
        // blocks lie outside mimalloc's heap.
        unsafe {
            let p = malloc(200);
            assert!(!p.is_null());
            assert!(mi_is_in_heap_region(p), "malloc did not come from mimalloc");
            let q = calloc(4, 300);
            assert!(mi_is_in_heap_region(q), "calloc did not come from mimalloc");
            let p = realloc(p, 70_000);
            assert!(mi_is_in_heap_region(p), "realloc did not come from mimalloc");
            free(p);
            free(q);
        }
    }

    #[test]
    #[allow(unsafe_code)]
    fn every_alignment_is_honoured() {
        let a = Allocator;
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1usize, 3, 7, 8, 22, 24, 52, 100, 1000, 5000, 70_000] {
                let Ok(layout) = Layout::from_size_align(size, align) else { continue };
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xAB, size);
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    let grown = a.realloc(p, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "realloc size {size} align {align}");
                    assert!((0..size).all(|i| *grown.add(i) == 0xAB), "realloc kept the bytes");
                    a.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
