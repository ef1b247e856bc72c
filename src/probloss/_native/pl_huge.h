/* pl_huge.h: transparent huge pages for a large buffer a kernel is about to write.
 *
 * C API (static, one copy per module):
 *   pl_huge_pages(data, bytes)   ask Linux for transparent huge pages (THP in
 *                                "madvise" mode) on the buffer's 2 MiB-aligned
 *                                interior, for buffers of 8 MiB or more
 *
 * Why: a freshly mapped result buffer (XLA's CPU allocator maps one per call
 * for large results; PyTorch's gradient buffers come from malloc, which maps
 * large blocks afresh too) costs a page fault per 4 KiB on first write, more
 * than the kernel's arithmetic for 250 MB. NumPy asks for huge pages itself.
 * The advice changes no data and is ignored where unsupported.
 */
#ifndef PL_HUGE_H
#define PL_HUGE_H

#include <stddef.h>
#include <stdint.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

static inline void pl_huge_pages(void *data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21;
    if (bytes < 4 * huge) return;
    uintptr_t begin = ((uintptr_t)data + huge - 1) & ~(huge - 1);
    uintptr_t end = ((uintptr_t)data + bytes) & ~(huge - 1);
    if (end > begin) (void)madvise((void *)begin, end - begin, MADV_HUGEPAGE);
#else
    (void)data, (void)bytes;
#endif
}

#endif /* PL_HUGE_H */
