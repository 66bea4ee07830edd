//! The global allocator: mimalloc, asked for plain blocks whenever the
//! alignment is the natural one.
//!
//! The request path allocates small, short-lived buffers (glibc's arenas
//! spent a fifth of a node's CPU on them). The `mimalloc` crate's own
//! `GlobalAlloc` passes every allocation through `mi_malloc_aligned`, whose
//! fast path gives up on blocks over 1 KiB, such as a boxed request future,
//! and then over-allocates; `mi_malloc` has no such detour. Natural
//! alignment is decided as Rust's own `System` allocator decides it: at
//! most 16 and at most the size, which `mi_malloc` guarantees (its blocks
//! of 16 bytes and more are 16-byte aligned, smaller ones size-aligned).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment `mi_malloc` guarantees for blocks of at least this size.
const MIN_ALIGN: usize = 16;

/// mimalloc as the global allocator (see the module doc).
#[derive(Debug, Default, Clone, Copy)]
pub struct MiAlloc;

fn natural(align: usize, size: usize) -> bool {
    align <= MIN_ALIGN && align <= size
}

// SAFETY: every method forwards to the mimalloc function for the same job,
// with the alignment the layout asks for (the aligned variant whenever the
// natural alignment of `mi_malloc` might not be enough); mimalloc's `mi_free`
// releases blocks from either variant.
unsafe impl GlobalAlloc for MiAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if natural(layout.align(), layout.size()) {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if natural(layout.align(), layout.size()) {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if natural(layout.align(), new_size) {
            mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_the_alignment_asked_for() {
        let a = MiAlloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 7, 8, 16, 24, 48, 100, 1000, 1500, 5000, 70_000] {
                let Ok(layout) = Layout::from_size_align(size.max(align), align) else {
                    continue;
                };
                // SAFETY: a non-zero layout; the block is freed with the same layout.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    let q = a.realloc(p, layout, layout.size() * 3);
                    assert_eq!(q as usize % align, 0, "realloc: size {size} align {align}");
                    a.dealloc(
                        q,
                        Layout::from_size_align(layout.size() * 3, align).unwrap(),
                    );
                }
            }
        }
    }
}
